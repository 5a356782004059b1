"""start / stop / reload / restart / rebuild on a fake root with a fake kexec_file_load.

The machine is a temporary tree (/proc, /sys, /boot, /etc, /run) with the real Debian test
kernel in /boot; images are really built (binaries from this machine, modules from the
Debian kernel, a raw target, --no-hostonly) and their freshness is the real check
(assemble/freshness.py). SAFETY: the syscall is FakeKexec; the real one refuses under pytest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd import host as host_mod
from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.lifecycle import service
from mkkdumprd.loader import kexec, live
from mkkdumprd.loader.load import NO_RESERVATION
from tests.support.debian_kernel import Kernel
from tests.support.fake_kexec import FakeKexec

M = 1 << 20
X86 = load_arch("x86_64")
CONF = "raw /dev/vdb\npath /var/crash\n"




def _write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def root(tmp_path: Path, kernel: Kernel) -> Path:
    r = tmp_path / "root"
    _write(r, "/proc/cmdline", f"BOOT_IMAGE=/boot/vmlinuz-{kernel.kver} root=/dev/vda1 ro "
                               "console=ttyS0 crashkernel=256M\n")
    _write(r, "/proc/sys/kernel/osrelease", kernel.kver + "\n")
    _write(r, "/sys/kernel/kexec_crash_size", f"{256 * M}\n")
    _write(r, "/sys/kernel/kexec_crash_loaded", "0\n")
    _write(r, "/etc/kdump.conf", CONF)
    (r / "run").mkdir(parents=True)
    (r / "boot").mkdir()
    shutil.copy(kernel.vmlinuz, r / f"boot/vmlinuz-{kernel.kver}")
    return r


def _svc(root: Path, kernel: Kernel, fake: FakeKexec, said: list[str]) -> service.Service:
    return service.Service(machine=Host(root), arch=X86, kernel=fake.kernel,
                           sysroot=Host.this_machine(), kmoddir=kernel.kmoddir,
                           hostonly=False, add_drivers=("virtio_blk",),
                           echo=said.append, warn=said.append)


def _image(root: Path, kernel: Kernel) -> Path:
    return root / f"boot/initramfs-{kernel.kver}kdump.img"


def _flags(fake: FakeKexec) -> list[int]:
    return [c.flags & kexec.KEXEC_FILE_UNLOAD for c in fake.calls]


def _loaded(root: Path) -> bool:
    return (root / "sys/kernel/kexec_crash_loaded").read_text().strip() == "1"


def test_start_builds_when_missing_then_not_when_fresh(root: Path, kernel: Kernel) -> None:
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    out = service.start(svc)
    img = _image(root, kernel)
    assert out.built and out.reasons == (f"{img} does not exist",)
    assert out.image is not None and str(out.image) == f"/boot/{img.name}"
    assert len(fake.calls) == 1 and fake.calls[0].flags == kexec.KEXEC_FILE_ON_CRASH
    # what the kernel got through initrd_fd is the image just built (zstd frame)
    assert fake.calls[0].initrd == img.read_bytes()[:64]
    assert fake.calls[0].initrd[:4] == b"\x28\xb5\x2f\xfd"
    assert _loaded(root) and out.loaded is not None and out.loaded["initrd"] == f"/boot/{img.name}"
    # start while loaded: kdumpctl's "already running", no build, no syscall
    assert service.start(svc).loaded is None
    assert len(fake.calls) == 1 and "already loaded" in said[-1]
    # stop + start: the image is current, so it is loaded as it is
    before = img.stat()
    service.stop(svc)
    assert _flags(fake) == [0, kexec.KEXEC_FILE_UNLOAD] and not _loaded(root)
    again = service.start(svc)
    assert not again.built and again.loaded is not None
    after = img.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert f"/boot/{img.name} is up to date" in said


def test_restart_rebuilds_a_stale_image_with_the_reason(root: Path, kernel: Kernel) -> None:
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    service.start(svc)
    old = _image(root, kernel).read_bytes()
    _write(root, "/etc/kdump.conf", CONF + "failure_action poweroff\n")
    out = service.restart(svc)
    assert out.built and out.reasons, out
    assert any("failure_action" in r or "kdump.conf" in r for r in out.reasons), out.reasons
    assert _image(root, kernel).read_bytes() != old
    # the build came first, then unload + load
    assert _flags(fake) == [0, kexec.KEXEC_FILE_UNLOAD, 0] and _loaded(root)


def test_reload_never_rebuilds(root: Path, kernel: Kernel) -> None:
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    service.start(svc)
    img = _image(root, kernel)
    before = img.read_bytes()
    _write(root, "/etc/kdump.conf", CONF + "failure_action poweroff\n")
    out = service.reload(svc)
    assert not out.built and out.unloaded and out.loaded is not None
    assert img.read_bytes() == before
    assert _flags(fake) == [0, kexec.KEXEC_FILE_UNLOAD, 0]


def test_reload_without_an_image_leaves_the_loaded_kernel(root: Path, kernel: Kernel) -> None:
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    service.start(svc)
    _image(root, kernel).unlink()
    with pytest.raises(UsageError, match=r"capture image .* does not exist"):
        service.reload(svc)
    assert _flags(fake) == [0] and _loaded(root)


def test_failed_build_on_restart_keeps_the_old_kernel(root: Path, kernel: Kernel) -> None:
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    service.start(svc)
    _write(root, "/etc/kdump.conf", CONF + 'dracut_args --add-drivers "virtio_blkk"\n')
    with pytest.raises(UsageError, match="virtio_blkk"):
        service.restart(svc)
    assert _flags(fake) == [0] and _loaded(root)


def test_force_no_rebuild_loads_the_stale_image(root: Path, kernel: Kernel) -> None:
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    service.start(svc)
    service.stop(svc)
    before = _image(root, kernel).read_bytes()
    _write(root, "/etc/kdump.conf", CONF + "failure_action poweroff\nforce_no_rebuild 1\n")
    out = service.start(svc)
    assert not out.built and out.loaded is not None
    assert _image(root, kernel).read_bytes() == before


def test_no_reservation_builds_nothing(root: Path, kernel: Kernel) -> None:
    _write(root, "/sys/kernel/kexec_crash_size", "0\n")
    fake, said = FakeKexec(root), []
    with pytest.raises(OperationError) as exc:
        service.start(_svc(root, kernel, fake, said))
    assert str(exc.value) == NO_RESERVATION
    assert fake.calls == [] and not _image(root, kernel).exists()


def test_image_goes_to_var_lib_when_boot_is_read_only(root: Path, kernel: Kernel,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:

    boot = root / "boot"
    real_access = host_mod.os.access
    # root may write anywhere; a read-only /boot mount is what access(2) reports as EROFS.
    monkeypatch.setattr(host_mod.os, "access",
                        lambda p, mode: False if Path(p) == boot else real_access(p, mode))
    fake, said = FakeKexec(root), []
    out = service.start(_svc(root, kernel, fake, said))
    assert str(out.image) == f"/var/lib/mkkdumprd/initramfs-{kernel.kver}kdump.img"
    assert (root / str(out.image).lstrip("/")).is_file()
    assert not _image(root, kernel).exists()
    assert out.loaded is not None and out.loaded["initrd"] == str(out.image)


def test_rebuild_is_unconditional(root: Path, kernel: Kernel) -> None:
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    assert service.rebuild(svc).reasons == ("rebuild requested",)
    assert said[0] == f"building {_image(root, kernel)}: rebuild requested"
    first = _image(root, kernel).stat()
    out = service.rebuild(svc)
    assert out.built and out.reasons == ("rebuild requested",)
    assert _image(root, kernel).stat().st_ino != first.st_ino   # written again (renamed in)
    assert fake.calls == []


def test_a_file_that_is_not_ours_is_replaced_only_by_rebuild(root: Path,
                                                             kernel: Kernel) -> None:
    """The rebuild policy of `mkkdumprd build` (assemble/rebuild_policy.py): start does not
    overwrite a file that is not an mkkdumprd image; rebuild (like build --force) does."""
    fake, said = FakeKexec(root), []
    svc = _svc(root, kernel, fake, said)
    _image(root, kernel).write_text("another tool's image")
    with pytest.raises(UsageError, match="not an mkkdumprd image; replace it with "
                                         "`mkkdumprd rebuild`"):
        service.start(svc)
    assert _image(root, kernel).read_text() == "another tool's image" and fake.calls == []
    assert service.rebuild(svc).built
    assert _image(root, kernel).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    started = service.start(svc)
    assert not started.built and started.loaded is not None


def test_cli_verbs_and_status_exit_codes(root: Path, kernel: Kernel,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKexec(root)
    # This test's machine is the fake tree: its kernel is the fake.
    monkeypatch.setattr(live, "RUNNING", fake.kernel)
    # The CLI builds from ROOT's own binaries; here the image is made first with the
    # test's build view, and force_no_rebuild keeps the CLI from rebuilding it.
    service.rebuild(_svc(root, kernel, fake, []))
    _write(root, "/etc/kdump.conf", CONF + "force_no_rebuild 1\n")
    run = CliRunner().invoke
    r = run(main, ["status", "--root", str(root)])
    assert r.exit_code == 3, r.output
    r = run(main, ["start", "--root", str(root)])
    assert r.exit_code == 0, r.output
    assert "up to date" in r.output and f"loaded /boot/vmlinuz-{kernel.kver}" in r.output
    assert run(main, ["status", "--root", str(root)]).exit_code == 0
    r = run(main, ["reload", "--root", str(root)])
    assert r.exit_code == 0 and "crash kernel unloaded" in r.output, r.output
    r = run(main, ["stop", "--root", str(root)])
    assert r.exit_code == 0 and "crash kernel unloaded" in r.output, r.output
    assert run(main, ["status", "--root", str(root)]).exit_code == 3
    r = run(main, ["stop", "--root", str(root)])
    assert r.exit_code == 0 and "no crash kernel was loaded" in r.output
    _write(root, "/sys/kernel/kexec_crash_size", "0\n")
    r = run(main, ["start", "--root", str(root)])
    assert r.exit_code == 1 and r.output.strip() == f"mkkdumprd: error: {NO_RESERVATION}"
    assert _flags(fake) == [0, kexec.KEXEC_FILE_UNLOAD, 0, kexec.KEXEC_FILE_UNLOAD,
                            kexec.KEXEC_FILE_UNLOAD]


def test_verbs_under_a_root_that_is_not_running_only_report(root: Path, kernel: Kernel,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The running system is elsewhere: no verb calls its kernel (issue 14, item 6)."""
    running = FakeKexec(root.parent / "running")
    monkeypatch.setattr(live, "RUNNING", running.kernel)
    fake = FakeKexec(root)
    service.rebuild(_svc(root, kernel, fake, []))
    _write(root, "/etc/kdump.conf", CONF + "force_no_rebuild 1\n")
    _write(root, "/sys/kernel/kexec_crash_loaded", "1\n")
    run = CliRunner().invoke
    for verb in ("start", "stop", "reload", "restart"):
        _write(root, "/sys/kernel/kexec_crash_loaded", "0\n" if verb == "start" else "1\n")
        r = run(main, [verb, "--root", str(root)])
        assert r.exit_code == 0, (verb, r.output)
        said = r.output
        if verb != "stop":
            assert f"not loaded: --root {root} is not the running system; kexec_file_load " \
                   "not called" in said, (verb, said)
            assert "kexec_file_load (syscall 320 on x86_64)" in said
        if verb != "start":
            assert f"not unloaded: --root {root} is not the running system" in said, said
    assert running.calls == [] and fake.calls == []
    assert not (root / "run/mkkdumprd/loaded.json").exists()
