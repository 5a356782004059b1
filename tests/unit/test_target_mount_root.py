"""The dump path on a filesystem the running system sees only in part (mountinfo's root
field): a btrfs subvolume, a bind mount. The capture kernel mounts the filesystem (or the
same subvolume, by id) and must write where the running system sees the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.assemble.target import fs_view, resolve_rootfs, resolve_target
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.host import Host, parse_mountinfo
from tests.support.fake_machine import ROOT_UUID, UUID, fake_machine

BTRFS_ROOT = ("22 1 0:31 /root / rw,relatime shared:1 - btrfs /dev/vda1 "
              "rw,space_cache=v2,subvolid=256,subvol=/root\n")


def _machine(tmp_path: Path, mountinfo: str, *dirs: str) -> Host:
    root = fake_machine(tmp_path / "m")
    (root / "proc/self/mountinfo").write_text(mountinfo)
    for d in dirs:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return Host(root)


def _local(path: str, device: str | None = None) -> KdumpConfig:
    return KdumpConfig(target=Target(TargetKind.LOCAL, device=device), path=path)


def test_path_in_btrfs_subvolume_is_relative_to_the_subvolume(tmp_path: Path) -> None:
    system = _machine(tmp_path, BTRFS_ROOT, "/var/crash")
    t, _ = resolve_target(_local("/var/crash"), system, True)
    assert (t.device, t.fstype, t.path) == (f"UUID={ROOT_UUID}", "btrfs", "/var/crash")
    assert t.mount_options == "subvolid=256" and t.subvolume == "/root"
    assert t.describe() == f"btrfs UUID={ROOT_UUID} subvolume /root:/var/crash"


def test_separate_mount_of_a_nested_subvolume(tmp_path: Path) -> None:
    # Fedora-style: /var/crash lives in subvolume "var" mounted on /var.
    system = _machine(tmp_path, BTRFS_ROOT +
                      "30 22 0:31 /var /var rw - btrfs /dev/vda1 rw,subvolid=257,subvol=/var\n",
                      "/var/crash")
    t, _ = resolve_target(_local("/var/crash"), system, True)
    assert (t.path, t.mount_options, t.subvolume) == ("/crash", "subvolid=257", "/var")


def test_bind_mount_joins_the_mount_root(tmp_path: Path) -> None:
    # /srv/dump shows the directory /exports/crashes of the ext4 filesystem on vdb1.
    system = _machine(tmp_path,
                      "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
                      "36 22 254:17 /exports/crashes /srv/dump rw - ext4 /dev/vdb1 rw\n",
                      "/srv/dump/kdump")
    t, _ = resolve_target(_local("/srv/dump/kdump"), system, True)
    assert (t.device, t.path, t.mount_options) == (f"UUID={UUID}", "/exports/crashes/kdump",
                                                   None)


def test_mount_root_with_escaped_space(tmp_path: Path) -> None:
    system = _machine(tmp_path,
                      "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
                      "36 22 254:17 /my\\040dumps /srv/dump rw - ext4 /dev/vdb1 rw\n",
                      "/srv/dump")
    t, _ = resolve_target(_local("/srv/dump"), system, True)
    assert t.path == "/my dumps"


def test_explicit_device_checks_the_path_through_the_mount_that_shows_it(
        tmp_path: Path) -> None:
    # vdb1 is mounted twice: a bind of /a on /srv/a and the whole filesystem on /mnt/all.
    system = _machine(tmp_path,
                      "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
                      "36 22 254:17 /a /srv/a rw - ext4 /dev/vdb1 rw\n"
                      "37 22 254:17 / /mnt/all rw - ext4 /dev/vdb1 rw\n",
                      "/mnt/all/b/crash")
    t, _ = resolve_target(_local("/b/crash", device="/dev/vdb1"), system, True)
    assert t.path == "/b/crash"
    with pytest.raises(Exception, match="create /mnt/all/b/none first"):
        resolve_target(_local("/b/none", device="/dev/vdb1"), system, True)


def test_btrfs_root_for_dump_to_rootfs(tmp_path: Path) -> None:
    system = _machine(tmp_path, BTRFS_ROOT)
    t, _ = resolve_rootfs(system, True)
    assert t is not None and (t.path, t.mount_options) == ("/", "subvolid=256")


@pytest.mark.parametrize(("line", "rel", "expected"), [
    # top level (subvolid 5): no option needed beyond the id
    ("1 1 0:1 / /m rw - btrfs /dev/x rw,subvolid=5,subvol=/\n", "/d", ("/d", "subvolid=5", "/")),
    # a bind mount of a directory inside a subvolume
    ("1 1 0:1 /root/srv/x /m rw - btrfs /dev/x rw,subvolid=256,subvol=/root\n", "/d",
     ("/srv/x/d", "subvolid=256", "/root")),
    # an old kernel without subvolid=: the path from the top level, no option
    ("1 1 0:1 /root /m rw - btrfs /dev/x rw\n", "/d", ("/root/d", None, None)),
    # a subvolid that is not a number is never passed on
    ("1 1 0:1 /root /m rw - btrfs /dev/x rw,subvolid=1;x,subvol=/root\n", "/",
     ("/root", None, None)),
    ("1 1 0:1 / /m rw - xfs /dev/x rw\n", "/", ("/", None, None)),
])
def test_fs_view(line: str, rel: str, expected: tuple[str, str | None, str | None]) -> None:
    (mount,) = parse_mountinfo(line)
    assert fs_view(mount, rel) == expected
