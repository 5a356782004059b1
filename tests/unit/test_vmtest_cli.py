"""`mkkdumprd test`: the real-crash path never reaches this machine in tests; the --vm path
fails with one line when QEMU, the kernel or the image is missing; stand-in choices."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.errors import UsageError
from mkkdumprd.loader import live
from mkkdumprd.loader import status as loader_status
from mkkdumprd.vmtest import targets
from mkkdumprd.vmtest.real_target import real_target


def _loaded(monkeypatch: pytest.MonkeyPatch, loaded: bool) -> None:
    monkeypatch.setattr(loader_status, "read_status",
                        lambda host: loader_status.Status(loaded, 256 << 20, None))


def test_real_crash_refuses_without_yes_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    _loaded(monkeypatch, True)
    r = CliRunner().invoke(main, ["test"])
    assert r.exit_code == 2
    assert "refusing to crash this machine without --yes" in r.output
    assert "mkkdumprd test --vm" in r.output


def test_real_crash_needs_a_loaded_capture_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    _loaded(monkeypatch, False)
    r = CliRunner().invoke(main, ["test", "--yes"])
    assert r.exit_code == 1 and "no crash kernel is loaded" in r.output


def test_real_crash_goes_through_the_door(monkeypatch: pytest.MonkeyPatch,
                                          kexec_guard: list[str]) -> None:
    _loaded(monkeypatch, True)
    monkeypatch.setattr(live.os, "geteuid", lambda: 0)
    r = CliRunner().invoke(main, ["test", "--yes"])
    # The guard's stand-in for the running kernel refused the crash: the one door was used.
    assert kexec_guard == ["live sysrq crash"]
    kexec_guard.clear()
    assert r.exit_code == 1 and "refused to crash this machine" in r.output


def test_real_crash_itself_refuses_under_pytest(kexec_guard: list[str]) -> None:
    with pytest.raises(live.kexec.KexecForbidden, match="refusing to crash this machine"):
        live.real_crash()
    assert kexec_guard == ["real_crash"]
    kexec_guard.clear()


def test_the_guard_refuses_writes_to_sysrq_trigger(kexec_guard: list[str]) -> None:
    with pytest.raises(PermissionError):
        open(live.SYSRQ_TRIGGER, "w")  # noqa: SIM115
    with pytest.raises(PermissionError):
        Path(live.SYSRQ_TRIGGER).write_text("c")
    assert len(kexec_guard) == 2
    kexec_guard.clear()


def test_only_the_door_crashes() -> None:
    pkg = Path(live.__file__).resolve().parents[1]
    users = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                   if "real_crash" in p.read_text())
    assert users == ["loader/live.py"]


def test_vm_without_qemu_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    r = CliRunner().invoke(main, ["test", "--vm"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "mkkdumprd: error: qemu-system-x86_64 not found on PATH; install QEMU "
        "(apt: qemu-system-x86, dnf: qemu-system-x86-core)"]


def test_vm_with_a_missing_kernel_or_image(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["test", "--vm", "--kernel", str(tmp_path / "nope"),
                                  "--kver", "6.1.0-1-amd64", "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 2 and f"kernel {tmp_path / 'nope'} does not exist" in r.output
    r = CliRunner().invoke(main, ["test", "--vm", "--image", str(tmp_path / "img"),
                                  "--workdir", str(tmp_path / "w")])
    assert r.exit_code == 2 and f"capture image {tmp_path / 'img'} does not exist" in r.output


def test_measure_needs_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    r = CliRunner().invoke(main, ["test", "--measure-crashkernel"])
    assert r.exit_code == 2 and "--measure-crashkernel needs --vm" in r.output
    r = CliRunner().invoke(main, ["test", "--real-target", "--yes"])
    assert r.exit_code == 2 and "--real-target needs --vm" in r.output


# -- stand-ins ---------------------------------------------------------------------------

ALL = frozenset({"virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "ahci"})


def test_bus_follows_the_image_drivers() -> None:
    assert targets.choose_bus(ALL, None) == "virtio"
    assert targets.choose_bus(frozenset({"nvme"}), None) == "nvme"
    assert targets.choose_bus(frozenset({"ahci", "sd_mod"}), None) == "sata"
    assert targets.choose_bus(frozenset(), None) == "virtio"
    assert targets.missing(targets.bus_drivers("virtio"), frozenset({"virtio_pci"})) == \
        ("virtio_blk",)


def test_device_names_map_to_bus_positions() -> None:
    assert targets.node_position("/dev/vdb", ALL, None) == ("virtio", 1)
    assert targets.node_position("/dev/sda", ALL, None) == ("scsi", 0)
    assert targets.node_position("/dev/sdc", frozenset({"ahci", "sd_mod"}), None) == ("sata", 2)
    assert targets.node_position("/dev/nvme1n1", ALL, None) == ("nvme", 1)
    with pytest.raises(UsageError, match="whole disks"):
        targets.node_position("/dev/vda1", ALL, None)


def test_builtin_modules(tmp_path: Path) -> None:
    (tmp_path / "modules.builtin").write_text("kernel/drivers/block/virtio_blk.ko\n"
                                              "kernel/fs/ext4/ext4.ko\n")
    assert targets.builtin_modules(tmp_path) == {"virtio_blk", "ext4"}
    assert targets.builtin_modules(None) == frozenset()


def test_local_stand_in_has_the_uuid_and_is_on_the_right_disk(tmp_path: Path) -> None:
    fs_uuid = str(uuid.uuid4())
    s = targets.stand_in({"kind": "local", "device": f"UUID={fs_uuid}", "fstype": "ext4",
                          "path": "/var/crash"}, frozenset({"nvme"}), tmp_path)
    assert isinstance(s, targets.LocalStandIn)
    assert [d.bus for d in s.drives] == ["nvme"] and s.missing_drivers == ()
    from mkkdumprd.vmtest.scratch import debugfs, ext_ls
    assert fs_uuid in debugfs(s.disk, "stats")
    assert ext_ls(s.disk, "/var/crash") == []
    with pytest.raises(Exception, match="no dump directory"):
        s.read_back(tmp_path / "vmcore")


def test_raw_stand_in_gets_fillers_before_it(tmp_path: Path) -> None:
    s = targets.stand_in({"kind": "raw", "device": "/dev/vdc", "path": "/"},
                         frozenset({"virtio_pci"}), tmp_path)
    assert len(s.drives) == 3 and s.missing_drivers == ("virtio_blk",)


def test_unsupported_targets_are_usage_errors(tmp_path: Path) -> None:
    # ssh has a stand-in, but it rebuilds the image: without the build request, an error
    with pytest.raises(UsageError, match=r"by rebuilding it .* instead of --image"):
        targets.stand_in({"kind": "ssh", "server": "root@h", "path": "/"}, ALL, tmp_path)
    # --real-target: nfs and ssh, and only with the build request
    with pytest.raises(UsageError, match="for nfs and ssh targets, not local"):
        real_target({"kind": "local", "device": "UUID=1", "path": "/"}, None, ALL, tmp_path)
    with pytest.raises(UsageError, match="instead of --image"):
        real_target({"kind": "nfs", "server": "10.0.2.100:/e", "path": "/"}, None, ALL,
                    tmp_path)
    with pytest.raises(UsageError, match="instead of --image"):
        real_target({"kind": "ssh", "server": "root@h", "path": "/"}, None, ALL, tmp_path)
    with pytest.raises(UsageError, match="IPv4 address"):
        targets.stand_in({"kind": "nfs", "server": "nas.example:/export", "path": "/"}, ALL,
                         tmp_path)
    # an xfs scratch disk is made by the guest: without the guest's kernel, an error
    with pytest.raises(UsageError, match="needs the kernel it boots"):
        targets.stand_in({"kind": "local", "device": "UUID=1", "fstype": "xfs", "path": "/"},
                         ALL, tmp_path)
