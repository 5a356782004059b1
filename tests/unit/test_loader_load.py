"""load / unload / status with an injected syscall on fake roots; the real one is never hit.

SAFETY: every test here passes a fake kexec_file_load (FakeKexec.kernel). The real wrapper
refuses to run under pytest, which `test_real_syscall_is_unreachable_under_pytest` checks
without reaching ctypes, and tests/conftest.py fails any test that reaches it.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.image import integrity
from mkkdumprd.loader import kexec, live, status
from mkkdumprd.loader import load as loader
from mkkdumprd.loader.__main__ import main as loader_main
from tests.support.fake_kexec import FakeKexec
from tests.support.kernel_images import arm64_image, zboot

KVER = "6.1.0-56-amd64"
M = 1 << 20


def _write(root: Path, rel: str, data: str | bytes) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)
    return p




@pytest.fixture
def root(tmp_path: Path, vmlinuz: Path) -> Path:
    _write(tmp_path, "/proc/cmdline",
           f"BOOT_IMAGE=/boot/vmlinuz-{KVER} root=/dev/vda1 ro quiet console=ttyS0 "
           "crashkernel=256M nr_cpus=4 rdinit=/sbin/init -- initarg\n")
    _write(tmp_path, "/proc/sys/kernel/osrelease", KVER + "\n")
    _write(tmp_path, "/sys/kernel/kexec_crash_size", f"{256 * M}\n")
    _write(tmp_path, "/sys/kernel/kexec_crash_loaded", "0\n")
    (tmp_path / "boot").mkdir()
    shutil.copy(vmlinuz, tmp_path / f"boot/vmlinuz-{KVER}")
    _write(tmp_path, f"/boot/initramfs-{KVER}kdump.img", b"070701" + b"\0" * 4090)
    return tmp_path


X86 = load_arch("x86_64")


def test_real_syscall_is_unreachable_under_pytest(monkeypatch: pytest.MonkeyPatch,
                                                  kexec_guard: list[str]) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("ctypes reached")
    monkeypatch.setattr(kexec.ctypes, "CDLL", boom)
    with pytest.raises(kexec.KexecForbidden, match="pytest is imported"):
        kexec.real_syscall(320, -1, -1, 0, None, kexec.KEXEC_FILE_UNLOAD)
    assert kexec_guard == ["real_syscall"]   # the guard saw it; this test did it on purpose
    kexec_guard.clear()


def test_guard_env_var_outside_pytest() -> None:
    # ctypes.CDLL is poisoned in the child too: a broken guard fails, it never loads.
    code = ("import os, sys; os.environ['MKKDUMPRD_FORBID_KEXEC'] = '1'\n"
            "from mkkdumprd.loader import kexec\n"
            "def poisoned(*a, **k):\n    raise SystemExit('guard broken: ctypes reached')\n"
            "kexec.ctypes.CDLL = poisoned\n"
            "assert 'pytest' not in sys.modules\n"
            "try:\n    kexec.real_syscall(320, -1, -1, 0, None, 3)\n"
            "except kexec.KexecForbidden as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == ("refused: refusing to call kexec_file_load for real: "
                           "MKKDUMPRD_FORBID_KEXEC is set")


def test_load_passes_fds_cmdline_and_flags(root: Path, vmlinuz: Path) -> None:
    host = Host(root)
    fake = FakeKexec(root)
    plan = loader.plan_load(host, X86)
    record = loader.execute_load(plan, host, fake.kernel)
    [call] = fake.calls
    assert call.nr == 320
    with vmlinuz.open("rb") as f:
        assert call.kernel == f.read(64)
    assert call.kernel_size == vmlinuz.stat().st_size
    assert call.initrd is not None and call.initrd.startswith(b"070701")
    assert call.flags == kexec.KEXEC_FILE_ON_CRASH
    assert call.cmdline is not None and call.cmdline.endswith(b"\0")
    assert call.cmdline_len == len(call.cmdline)
    line = call.cmdline[:-1].decode()
    assert line.startswith("ro console=ttyS0 ")
    for gone in ("crashkernel=", "root=", "rdinit=", "BOOT_IMAGE=", "initarg", "quiet",
                 "nr_cpus=4", "elfcorehdr"):
        assert gone not in line
    assert line.endswith(" ".join(X86.cmdline_append))
    assert record["kernel"] == f"/boot/vmlinuz-{KVER}"
    assert json.loads((root / "run/mkkdumprd/loaded.json").read_text()) == record
    st = status.read_status(host)
    assert st.loaded and st.exit_code == 0 and st.reserved == 256 * M
    assert f"kernel:       /boot/vmlinuz-{KVER} (as is)" in status.format_status(st)


def test_no_reservation_is_refused_before_any_syscall(root: Path) -> None:
    _write(root, "/sys/kernel/kexec_crash_size", "0\n")
    fake = FakeKexec(root)
    res = CliRunner().invoke(main, ["load", "--root", str(root), "--arch", "x86_64"])
    assert res.exit_code == 1
    assert res.stderr.strip() == f"mkkdumprd: error: {loader.NO_RESERVATION}"
    assert "crashkernel recommend" in res.stderr and "then reboot" in res.stderr
    assert fake.calls == []
    (root / "sys/kernel/kexec_crash_size").unlink()
    with pytest.raises(OperationError, match="no crash dump support"):
        loader.plan_load(Host(root), X86)


def test_dry_run_prints_everything_and_calls_nothing(root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKexec(root)
    monkeypatch.setattr(live, "RUNNING", fake.kernel)
    res = CliRunner().invoke(main, ["load", "--root", str(root), "--arch", "x86_64",
                                    "--dry-run", "--append", "foo=bar"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "kexec_file_load (syscall 320 on x86_64)" in out
    assert f"kernel_fd   /boot/vmlinuz-{KVER} (bzImage, boot protocol" in out
    assert f"initrd_fd   /boot/initramfs-{KVER}kdump.img" in out
    assert "flags       0x2 (KEXEC_FILE_ON_CRASH)" in out
    assert "foo=bar" in out and "dry run: kexec_file_load not called" in out
    assert fake.calls == []
    assert not (root / "run/mkkdumprd/loaded.json").exists()


def test_cli_load_status_unload_cycle_uses_the_fake(root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKexec(root)
    # This test's machine is the fake tree: its kernel is the fake.
    monkeypatch.setattr(live, "RUNNING", fake.kernel)
    r = CliRunner()
    res = r.invoke(main, ["status", "--root", str(root)])
    assert res.exit_code == 3 and "crash kernel: not loaded" in res.stdout
    res = r.invoke(main, ["load", "--root", str(root), "--arch", "x86_64"])
    assert res.exit_code == 0, res.output
    assert len(fake.calls) == 1
    res = r.invoke(main, ["status", "--root", str(root), "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["loaded"] and data["reserved"] == 256 * M
    assert data["kernel"] == f"/boot/vmlinuz-{KVER}"
    assert data["initrd"] == f"/boot/initramfs-{KVER}kdump.img"
    res = r.invoke(main, ["unload", "--root", str(root), "--arch", "x86_64"])
    assert res.exit_code == 0
    unload_call = fake.calls[-1]
    assert (unload_call.nr, unload_call.kernel, unload_call.initrd, unload_call.cmdline_len,
            unload_call.cmdline) == (320, None, None, 0, None)
    assert unload_call.flags == kexec.KEXEC_FILE_UNLOAD | kexec.KEXEC_FILE_ON_CRASH
    assert not (root / "run/mkkdumprd/loaded.json").exists()
    res = r.invoke(main, ["status", "--root", str(root)])
    assert res.exit_code == 3


@pytest.mark.parametrize(("err", "words"), [
    (errno.EPERM, ["lockdown", "CAP_SYS_BOOT", "Secure Boot"]),
    (errno.EKEYREJECTED, ["signature was rejected", "signed"]),
    (errno.ENOKEY, ["not in the .platform", "mokutil"]),
    (errno.EADDRNOTAVAIL, ["do not fit", "`mkkdumprd crashkernel recommend`"]),
    (errno.ENOEXEC, ["does not accept the format", "bzImage"]),
    (errno.EBUSY, ["in progress", "retry"]),
    (errno.ENOSYS, ["CONFIG_KEXEC_FILE", "`kexec -p`"]),
    (errno.EINVAL, ["refused the arguments", "--dry-run"]),
    (errno.ENOMEM, ["could not allocate"]),
])
def test_every_errno_becomes_an_actionable_sentence(root: Path, err: int,
                                                    words: list[str]) -> None:
    host = Host(root)
    fake = FakeKexec(root, fail=err)
    with pytest.raises(OperationError) as exc:
        loader.execute_load(loader.plan_load(host, X86), host, fake.kernel)
    msg = str(exc.value)
    assert msg.startswith(f"loading /boot/vmlinuz-{KVER} as the crash kernel ")
    assert f"({errno.errorcode[err]})" in msg and "\n" not in msg
    for w in words:
        assert w in msg
    assert not (root / "run/mkkdumprd/loaded.json").exists()
    assert not status.read_status(host).loaded


def test_unknown_errno_and_unload_errors() -> None:
    assert "errno 125" in kexec.errno_message(125, "k", None)
    assert kexec.errno_message(errno.EBUSY, "", None, unload=True).startswith(
        "unloading the crash kernel failed (EBUSY)")


def test_unload_failure_keeps_the_record(root: Path) -> None:
    host = Host(root)
    loader.execute_load(loader.plan_load(host, X86), host, FakeKexec(root).kernel)
    with pytest.raises(OperationError, match="EPERM"):
        loader.unload(host, X86, FakeKexec(root, fail=errno.EPERM).kernel)
    assert (root / "run/mkkdumprd/loaded.json").exists()


def test_preflight_refuses_what_cannot_fit(root: Path) -> None:
    _write(root, "/sys/kernel/kexec_crash_size", f"{32 * M}\n")
    fake = FakeKexec(root)
    with pytest.raises(OperationError, match=r"do not fit in the 32 MiB .*crashkernel recommend"):
        loader.execute_load(loader.plan_load(Host(root), X86), Host(root), fake.kernel)
    assert fake.calls == []


def test_missing_capture_image_and_kernel(root: Path) -> None:
    (root / f"boot/initramfs-{KVER}kdump.img").unlink()
    # /boot is writable, so that is where `mkkdumprd build` would put it (locations.py)
    with pytest.raises(UsageError, match=rf"/boot/initramfs-{KVER}kdump.img "
                       rf"does not exist; build it with `mkkdumprd --kver {KVER} -o "
                       rf"/boot/initramfs-{KVER}kdump.img`"):
        loader.plan_load(Host(root), X86)
    # built while /boot was read-only: found in the other place
    _write(root, f"/var/lib/mkkdumprd/initramfs-{KVER}kdump.img", b"070701")
    assert loader.plan_load(Host(root), X86).initrd == \
        PurePosixPath(f"/var/lib/mkkdumprd/initramfs-{KVER}kdump.img")
    plan = loader.plan_load(Host(root), X86, no_initrd=True)
    assert plan.flags == kexec.KEXEC_FILE_ON_CRASH | kexec.KEXEC_FILE_NO_INITRAMFS
    with pytest.raises(UsageError, match="does not exist; pass an existing file with --kernel"):
        loader.plan_load(Host(root), X86, kernel="/boot/nope", no_initrd=True)


def test_x86_refuses_a_non_bzimage(root: Path) -> None:
    _write(root, "/boot/vmlinux", arm64_image())
    fake = FakeKexec(root)
    with pytest.raises(OperationError, match="arm64 Image; kexec_file_load on x86_64 takes"):
        loader.execute_load(loader.plan_load(Host(root), X86, kernel="/boot/vmlinux"),
                            Host(root), fake.kernel)
    assert fake.calls == []


@pytest.mark.parametrize("wrap", ["gzip", "zboot-zstd"])
def test_arm64_wrapped_kernels_reach_the_syscall_unpacked(root: Path, wrap: str) -> None:
    inner = arm64_image(image_size=40 * M, body=os.urandom(8192))
    data = gzip.compress(inner) if wrap == "gzip" else zboot(inner, "zstd")
    _write(root, "/boot/vmlinuz-arm", data)
    fake = FakeKexec(root)
    arm = load_arch("aarch64")
    host = Host(root)
    plan = loader.plan_load(host, arm, kernel="/boot/vmlinuz-arm")
    rec = loader.execute_load(plan, host, fake.kernel)
    [call] = fake.calls
    assert call.nr == 294
    assert call.kernel == inner[:64] and call.kernel_size == len(inner)
    assert rec["kernel_format"] == "arm64-image"
    assert rec["kernel_how"] in ("gunzipped", "unwrapped from EFI zboot (zstd)")
    assert plan.cmdline.endswith(" ".join(arm.cmdline_append))


def test_status_cases_on_fake_sys(tmp_path: Path) -> None:
    host = Host(tmp_path)
    st = status.read_status(host)
    assert (st.loaded, st.reserved, st.exit_code) == (False, None, 3)
    assert "no /sys/kernel/kexec_crash_size" in status.format_status(st)
    _write(tmp_path, "/sys/kernel/kexec_crash_size", "0\n")
    assert "crashkernel= is missing" in status.format_status(status.read_status(host))
    _write(tmp_path, "/sys/kernel/kexec_crash_size", f"{192 * M}\n")
    _write(tmp_path, "/sys/kernel/kexec_crash_loaded", "1\n")
    st = status.read_status(host)
    assert st.exit_code == 0 and "reservation:  192 MiB" in status.format_status(st)
    assert "another tool" in status.format_status(st)      # loaded, but not by us
    status.write_record(host, {"kernel": "/boot/k", "initrd": "/boot/i", "cmdline": "c"})
    _write(tmp_path, "/sys/kernel/kexec_crash_loaded", "0\n")
    text = status.format_status(status.read_status(host))
    assert "not loaded" in text and "stale record of /boot/k" in text


def test_stdlib_entry_point(root: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKexec(root)
    # This test's machine is the fake tree: its kernel is the fake.
    monkeypatch.setattr(live, "RUNNING", fake.kernel)
    assert loader_main(["--root", str(root), "--arch", "x86_64", "status"]) == 3
    assert loader_main(["--root", str(root), "--arch", "x86_64", "load", "--dry-run"]) == 0
    assert loader_main(["--root", str(root), "--arch", "x86_64", "load"]) == 0
    assert loader_main(["--root", str(root), "status"]) == 0
    assert loader_main(["--root", str(root), "--arch", "x86_64", "unload"]) == 0
    assert [c.flags for c in fake.calls] == [2, 3]
    # Another root is not the running system: reported, nothing called.
    other = root / "other"
    shutil.copytree(root, other, ignore=shutil.ignore_patterns("other"))
    capsys.readouterr()
    assert loader_main(["--root", str(other), "--arch", "x86_64", "load"]) == 0
    assert loader_main(["--root", str(other), "--arch", "x86_64", "unload"]) == 0
    out = capsys.readouterr().out
    assert f"--root {other} is not the running system: kexec_file_load not called" in out
    assert f"would unload the crash kernel; --root {other} is not the running system" in out
    assert [c.flags for c in fake.calls] == [2, 3]
    _write(root, "/sys/kernel/kexec_crash_size", "0\n")
    assert loader_main(["--root", str(root), "--arch", "x86_64", "load"]) == 1
    assert loader.NO_RESERVATION in capsys.readouterr().err


def test_loader_imports_with_the_standard_library_alone(root: Path) -> None:
    """A guest with a bare python3: no site-packages (-S), isolated (-I)."""
    top = Path(__file__).resolve().parents[2]
    code = (f"import sys; sys.path.insert(0, {str(top)!r})\n"
            "import mkkdumprd.loader.__main__ as m\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
            "('click', 'jinja2', 'elftools', 'libarchive', 'zstandard'))\n"
            "assert not bad, bad\n"
            f"sys.exit(m.main(['--root', {str(root)!r}, '--arch', 'x86_64', 'load', '-n']))\n")
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "dry run: kexec_file_load not called" in res.stdout


def test_relative_paths_are_taken_from_the_current_directory(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root / "boot")
    here = Path.cwd()
    _write(root, f"{here}/k", (root / f"boot/vmlinuz-{KVER}").read_bytes())
    plan = loader.plan_load(Host(root), X86, kernel="k", no_initrd=True)
    assert plan.kernel == PurePosixPath(f"{here}/k")


# Only root's, unmodified capture images are loaded (issue 14 item 2; loader/trust.py)

@pytest.mark.parametrize("change", ["owner", "group-write", "other-write"])
def test_loader_refuses_images_others_own_or_may_write(root: Path, change: str) -> None:
    image = root / f"boot/initramfs-{KVER}kdump.img"
    if change == "owner":
        os.chown(image, 1000, 1000)
    else:
        image.chmod(0o664 if change == "group-write" else 0o646)
    host = Host(root)
    fake = FakeKexec(root)
    with pytest.raises(OperationError, match="refusing to load it as the capture image"):
        loader.execute_load(loader.plan_load(host, X86), host, fake.kernel)
    assert fake.calls == []


def test_loader_refuses_a_recorded_image_that_no_longer_matches(root: Path) -> None:
    image = root / f"boot/initramfs-{KVER}kdump.img"
    integrity.write_record(image, hashlib.sha256(image.read_bytes()).hexdigest())
    host = Host(root)
    loader.execute_load(loader.plan_load(host, X86), host, FakeKexec(root).kernel)   # matches
    with image.open("ab") as f:
        f.write(b"070701" + b"0" * 104)
    fake = FakeKexec(root)
    with pytest.raises(OperationError, match="is not the file its build wrote"):
        loader.execute_load(loader.plan_load(host, X86), host, fake.kernel)
    assert fake.calls == []
