"""Working out the dump target for the capture kernel (no udev there) and Fedora's
build-time checks, on fake machine trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.assemble.target import resolve_target
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from tests.support.fake_machine import ROOT_UUID, UUID, fake_machine


@pytest.fixture
def system(tmp_path: Path) -> Host:
    root = fake_machine(tmp_path / "m")
    (root / "dev/disk/by-id").mkdir(parents=True)
    (root / "dev/disk/by-id/virtio-serial1").symlink_to("../../vdb")
    return Host(root)


def _cfg(target: Target | None = None, path: str = "/crash") -> KdumpConfig:
    return KdumpConfig(target=target or Target(TargetKind.LOCAL), path=path)


def test_partuuid_becomes_uuid_for_busybox_findfs(system: Host) -> None:
    t, _ = resolve_target(_cfg(Target(TargetKind.LOCAL, device="PARTUUID=abcd-01",
                                      fstype="ext4")), system, True)
    assert t.device == f"UUID={UUID}" and str(t.host_device) == "/dev/vdb1"


def test_kernel_name_becomes_uuid_and_fstype_comes_from_the_mount(system: Host) -> None:
    t, warnings = resolve_target(_cfg(Target(TargetKind.LOCAL, device="/dev/vdb1")), system, True)
    assert t.device == f"UUID={UUID}" and t.fstype == "ext4" and warnings == []


def test_configured_fstype_must_match(system: Host) -> None:
    with pytest.raises(UsageError, match="/dev/vdb1 holds ext4, not xfs as configured"):
        resolve_target(_cfg(Target(TargetKind.LOCAL, device="/dev/vdb1", fstype="xfs")),
                       system, True)


def test_missing_path_on_a_mounted_target(system: Host) -> None:
    with pytest.raises(UsageError, match=r"dump path /nope does not exist on the dump target "
                                         r"/dev/vdb1 \(mounted at /srv/dump\); create "
                                         r"/srv/dump/nope first"):
        resolve_target(_cfg(Target(TargetKind.LOCAL, device="/dev/vdb1"), "/nope"), system, True)


def test_raw_udev_link_becomes_kernel_name_with_warning(system: Host) -> None:
    t, warnings = resolve_target(_cfg(Target(TargetKind.RAW,
                                             device="/dev/disk/by-id/virtio-serial1")),
                                 system, True)
    assert t.device == "/dev/vdb"
    assert any("udev link" in w for w in warnings)


def test_raw_refuses_uuid(system: Host) -> None:
    with pytest.raises(UsageError, match="a raw target needs a device path"):
        resolve_target(_cfg(Target(TargetKind.RAW, device=f"UUID={UUID}")), system, True)


def test_hostonly_missing_device(system: Host) -> None:
    with pytest.raises(UsageError, match="target device /dev/sdz not found on this machine"):
        resolve_target(_cfg(Target(TargetKind.RAW, device="/dev/sdz")), system, True)


def test_no_hostonly_takes_the_target_as_given(system: Host) -> None:
    t, warnings = resolve_target(_cfg(Target(TargetKind.LOCAL, device="/dev/sdz")), system,
                                 False)
    assert t.device == "/dev/sdz" and t.fstype is None and t.host_device is None
    assert any("filesystem type of /dev/sdz is unknown" in w for w in warnings)
    t, warnings = resolve_target(_cfg(Target(TargetKind.LOCAL, device="/dev/disk/by-id/x",
                                             fstype="xfs")), system, False)
    assert any("no udev" in w for w in warnings)


def test_no_hostonly_local_needs_a_device(system: Host) -> None:
    with pytest.raises(UsageError, match="--target local:DEVICE:PATH"):
        resolve_target(_cfg(), system, False)


def test_path_on_a_virtual_filesystem_is_refused(system: Host) -> None:
    with pytest.raises(UsageError, match="on a proc filesystem"):
        resolve_target(_cfg(path="/proc"), system, True)


def test_path_on_root_filesystem(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "m")
    (root / "var/crash").mkdir(parents=True)
    t, _ = resolve_target(_cfg(path="/var/crash"), Host(root), True)
    assert t.device == f"UUID={ROOT_UUID}" and t.path == "/var/crash" and t.fstype == "ext4"
    (root / f"dev/disk/by-uuid/{ROOT_UUID}").unlink()
    t, _ = resolve_target(_cfg(path="/var/crash"), Host(root), True)
    assert t.device == "/dev/vda1"  # no UUID known: the kernel name


def test_raw_device_must_be_readable(system: Host) -> None:
    dev = system.path("/dev/vdb")
    dev.unlink()
    dev.mkdir()  # reading a directory fails like an unreadable device
    with pytest.raises(UsageError, match="cannot read the raw device /dev/vdb"):
        resolve_target(_cfg(Target(TargetKind.RAW, device="/dev/vdb")), system, True)
