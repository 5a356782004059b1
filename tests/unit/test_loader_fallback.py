"""The kexec_load fallback: a fake kexec_file_load answering ENOSYS (as Debian's arm64,
ppc64el and riscv64 kernels do) and a fake kexec-tools runner for a fake root.

SAFETY: the syscall and the runner are fakes; nothing is executed. The real runner runs only
the running system's kexec, never one under a root prefix, and refuses under pytest
(test_live_kexec_is_refused_under_pytest, test_kexec_under_a_root_is_never_run).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.loader import kexec, kexec_tools, live, status
from mkkdumprd.loader import load as loader
from mkkdumprd.loader.kexec import SyscallFn
from tests.support.kernel_images import arm64_image

KVER = "6.1.0-56-arm64"
M = 1 << 20
ARM = load_arch("aarch64")
STEXT = 0xFFFFA7D4C8010000
KALLSYMS = (f"{STEXT - 0x10000:016x} t _head\n{STEXT:016x} T _stext\n"
            f"{STEXT + 0x40:016x} T __do_softirq\n")



@dataclass
class FakeKexecTools:
    """Stands in for running kexec-tools: records argv and kallsyms, plays the kernel's sysfs."""

    root: Path
    fail: bool = False
    runs: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)

    def __call__(self, host: Host, argv: Sequence[str],
                 kallsyms: str | None) -> tuple[int, str]:
        self.runs.append((tuple(argv), kallsyms))
        if self.fail:
            return 1, "Cannot load /boot/vmlinuz\n"
        loaded = "0" if "-u" in argv else "1"
        (self.root / "sys/kernel/kexec_crash_loaded").write_text(loaded + "\n")
        return 0, ""


def _kernel(root: Path, syscall: SyscallFn, tools: FakeKexecTools | None = None) -> live.Kernel:
    return live.Kernel(root, syscall, tools or FakeKexecTools(root))


class ENOSYSCall:
    """kexec_file_load of a kernel built without CONFIG_KEXEC_FILE."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, nr: int, kfd: int, ifd: int, length: int, cmdline: bytes | None,
                 flags: int) -> None:
        self.calls += 1
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))


def _write(root: Path, rel: str, data: str | bytes, mode: int = 0o644) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)
    p.chmod(mode)
    return p


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _write(tmp_path, "/proc/cmdline", "console=ttyAMA0 crashkernel=256M root=/dev/vda1\n")
    _write(tmp_path, "/proc/sys/kernel/osrelease", KVER + "\n")
    _write(tmp_path, "/proc/kallsyms", KALLSYMS)
    _write(tmp_path, "/sys/kernel/kexec_crash_size", f"{256 * M}\n")
    _write(tmp_path, "/sys/kernel/kexec_crash_loaded", "0\n")
    _write(tmp_path, f"/boot/vmlinuz-{KVER}", arm64_image(image_size=40 * M))
    _write(tmp_path, f"/boot/initramfs-{KVER}kdump.img", b"070701" + b"\0" * 4090)
    return tmp_path


def _with_kexec(root: Path) -> Path:
    # Only found (find_kexec), never run: the runner is FakeKexecTools.
    return _write(root, "/sbin/kexec", "#!/bin/sh\nexit 99\n", 0o755)


def test_enosys_falls_back_to_kexec_tools(root: Path) -> None:
    _with_kexec(root)
    host = Host(root)
    fake, tools = ENOSYSCall(), FakeKexecTools(root)
    plan = loader.plan_load(host, ARM)
    rec = loader.execute_load(plan, host, _kernel(root, fake, tools))
    assert fake.calls == 1
    [(argv, _)] = tools.runs
    assert list(argv) == ["/sbin/kexec", "-p", "-c", f"/boot/vmlinuz-{KVER}",
                    f"--initrd=/boot/initramfs-{KVER}kdump.img",
                    f"--command-line={plan.cmdline}"]
    assert "elfcorehdr" not in plan.cmdline          # kexec-tools adds it
    assert rec["path"] == "kexec_load" and rec["kernel_how"] == "as is, by kexec-tools"
    assert rec["note"].startswith("this kernel has no kexec_file_load (ENOSYS")
    assert "/sbin/kexec -p -c" in rec["note"]
    st = status.read_status(host)
    assert st.loaded
    assert "loaded via:   kexec_load (kexec-tools `kexec -p`" in status.format_status(st)
    assert status.status_json(st)["path"] == "kexec_load"


def test_arm64_without_text_gets_kallsyms_with_text(root: Path) -> None:
    _with_kexec(root)
    host = Host(root)
    tools = FakeKexecTools(root)
    rec = loader.execute_load(loader.plan_load(host, ARM), host,
                              _kernel(root, ENOSYSCall(), tools))
    [(_, fixed)] = tools.runs
    assert fixed == f"{STEXT - 0x10000:016x} T _text\n" + KALLSYMS
    assert "private mount namespace, /proc/kallsyms with _text added" in rec["note"]


def test_kallsyms_fix_only_when_needed() -> None:
    fix = kexec_tools.kallsyms_with_text
    fixed = fix(KALLSYMS, "aarch64")
    assert fixed is not None and fixed.startswith(f"{STEXT - 0x10000:016x} T _text\n")
    assert fix(f"{STEXT - 0x10000:016x} T _text\n" + KALLSYMS, "aarch64") is None
    assert fix(KALLSYMS, "ppc64le") is None
    # kptr_restrict shows zeros: nothing to derive, kexec-tools says so itself.
    assert fix("0000000000000000 T _stext\n", "aarch64") is None


def test_enosys_without_kexec_tools_says_what_to_install(root: Path) -> None:
    host = Host(root)
    with pytest.raises(OperationError) as e:
        loader.execute_load(loader.plan_load(host, ARM), host, _kernel(root, ENOSYSCall()))
    msg = str(e.value)
    assert "\n" not in msg and "(ENOSYS)" in msg and "CONFIG_KEXEC_FILE" in msg
    assert "`kexec -p`, which is not installed" in msg
    assert "apt install kexec-tools" in msg and "dnf install kexec-tools" in msg
    assert not status.read_status(host).loaded
    assert not (root / "run/mkkdumprd/loaded.json").exists()


def test_failing_kexec_tools_is_reported(root: Path) -> None:
    _with_kexec(root)
    host = Host(root)
    with pytest.raises(OperationError) as e:
        loader.execute_load(loader.plan_load(host, ARM), host,
                            _kernel(root, ENOSYSCall(), FakeKexecTools(root, fail=True)))
    msg = str(e.value)
    assert "the kexec_load fallback `/sbin/kexec -p -c" in msg
    assert "failed too (exit 1: Cannot load /boot/vmlinuz)" in msg
    assert not (root / "run/mkkdumprd/loaded.json").exists()


def test_other_errors_do_not_fall_back(root: Path) -> None:
    _with_kexec(root)
    host = Host(root)

    def eperm(*_: object) -> None:
        raise OSError(errno.EPERM, "x")
    tools = FakeKexecTools(root)
    with pytest.raises(OperationError, match=r"\(EPERM\)"):
        loader.execute_load(loader.plan_load(host, ARM), host, _kernel(root, eperm, tools))
    assert tools.runs == []


def test_cli_load_status_unload_through_the_fallback(root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _with_kexec(root)
    tools = FakeKexecTools(root)
    # This test's machine is the fake tree: its kernel is the fake syscall and runner.
    monkeypatch.setattr(live, "RUNNING", _kernel(root, ENOSYSCall(), tools))
    r = CliRunner()
    res = r.invoke(main, ["load", "--root", str(root), "--arch", "aarch64"])
    assert res.exit_code == 0, res.output
    first, second = res.output.splitlines()
    assert first.startswith("mkkdumprd: this kernel has no kexec_file_load (ENOSYS")
    assert second.startswith(f"loaded /boot/vmlinuz-{KVER} (as is, by kexec-tools)")
    res = r.invoke(main, ["status", "--root", str(root), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["path"] == "kexec_load"
    res = r.invoke(main, ["unload", "--root", str(root), "--arch", "aarch64"])
    assert res.exit_code == 0, res.output
    assert tools.runs[-1] == (("/sbin/kexec", "-p", "-u"), None)
    assert r.invoke(main, ["status", "--root", str(root)]).exit_code == 3


def test_unload_enosys_without_kexec_tools(root: Path) -> None:
    with pytest.raises(OperationError, match=r"ENOSYS.*install kexec-tools"):
        loader.unload(Host(root), ARM, _kernel(root, ENOSYSCall()))


def test_file_load_records_its_path(root: Path) -> None:
    host = Host(root)
    calls = []

    def ok(*args: object) -> None:
        calls.append(args)
        (root / "sys/kernel/kexec_crash_loaded").write_text("1\n")
    rec = loader.execute_load(loader.plan_load(host, ARM), host, _kernel(root, ok))
    assert rec["path"] == "kexec_file_load" and rec["note"] is None and len(calls) == 1
    assert "loaded via:   kexec_file_load" in status.format_status(status.read_status(host))


def test_live_kexec_is_refused_under_pytest(monkeypatch: pytest.MonkeyPatch,
                                            kexec_guard: list[str]) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("subprocess reached")
    monkeypatch.setattr(kexec_tools.subprocess, "run", boom)
    with pytest.raises(kexec.KexecForbidden, match="kexec-tools for real: pytest"):
        kexec_tools.run_kexec(Host(Path("/")), ["/sbin/kexec", "-p", "-u"], None)
    # The guard (tests/conftest.py) saw the attempt; this test made it on purpose.
    assert kexec_guard == ["run_kexec"]
    kexec_guard.clear()


def test_kexec_under_a_root_is_never_run(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("subprocess reached")
    monkeypatch.setattr(kexec_tools.subprocess, "run", boom)
    _with_kexec(root)
    with pytest.raises(kexec.KexecForbidden, match=r"system under .* only the running"):
        kexec_tools.run_kexec(Host(root), ["/sbin/kexec", "-p", "-u"], None)
