"""The one door to the running kernel (loader/live.py) and the test suite's kexec guard.

Issue 14 item 6: a root prefix or a dry run never reaches the live syscall, and no program
is run from a root prefix.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.loader import kexec, live

PACKAGE = Path(__file__).resolve().parents[2] / "mkkdumprd"


def _names(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.name)
    return found


def test_only_the_door_refers_to_the_real_calls() -> None:
    users = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        names = _names(ast.parse(path.read_text())) & {"real_syscall", "run_kexec"}
        if names:
            users[str(path.relative_to(PACKAGE))] = sorted(names)
    # (their definitions are no references)
    assert users == {"loader/live.py": ["real_syscall", "run_kexec"]}


def test_only_the_loader_calls_into_libc() -> None:
    """No other module can reach syscall(2) (kexec_load, kexec_file_load) around the door."""
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if "CDLL" in _names(ast.parse(p.read_text())))
    # kexec.py: the syscall itself; kexec_tools.py: unshare/mount in kexec-tools' child
    assert users == ["loader/kexec.py", "loader/kexec_tools.py"]


def test_running_kernel_only_for_the_running_root(tmp_path: Path) -> None:
    assert live.kernel_for(Path("/")) is live.RUNNING
    assert live.kernel_for(Path("/"), dry_run=True) is None
    assert live.kernel_for(tmp_path) is None
    (tmp_path / "slash").symlink_to("/")
    assert live.kernel_for(tmp_path / "slash") is live.RUNNING   # the same tree
    assert live.kernel_for(Path("/usr/..")) is live.RUNNING
    assert live.why_not(tmp_path) == f"--root {tmp_path} is not the running system"
    assert live.why_not(Path("/"), dry_run=True) == "dry run"


def test_chroot_is_told_from_init_s_root(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "root").symlink_to("/")
    assert not live.in_chroot(tmp_path)          # init's / is ours
    (tmp_path / "1" / "root").unlink()
    (tmp_path / "1" / "root").symlink_to(tmp_path)
    assert live.in_chroot(tmp_path)              # init's / is another tree
    assert not live.in_chroot(tmp_path / "missing")   # nothing known


def test_a_chroot_never_gets_the_running_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real calls, as outside the test suite; the refusal comes before any of them.
    monkeypatch.setattr(live, "RUNNING", live.Kernel(Path("/"), kexec.real_syscall,
                                                     live.run_kexec))
    monkeypatch.setattr(live, "in_chroot", lambda: True)
    with pytest.raises(live.OperationError, match="runs in a chroot"):
        live.kernel_for(Path("/"))
    assert live.kernel_for(Path("/"), dry_run=True) is None


@pytest.mark.parametrize("argv", [
    ["load", "--dry-run", "--arch", "x86_64"],
    ["load", "-n", "--arch", "x86_64", "--kernel", "/proc/self/exe", "--no-initrd"],
])
def test_dry_run_on_the_running_system_calls_nothing(argv: list[str],
                                                     kexec_guard: list[str]) -> None:
    # On this machine: it may have no reservation (exit 1), never a call (the guard).
    r = CliRunner().invoke(main, argv)
    assert r.exit_code in (0, 1, 2), r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert kexec_guard == []


def test_the_guard_catches_an_exec_of_kexec(kexec_guard: list[str], tmp_path: Path) -> None:
    fake = tmp_path / "kexec"
    fake.write_text("#!/bin/sh\ntouch ran\n")
    fake.chmod(0o755)
    with pytest.raises(PermissionError):
        subprocess.run([str(fake), "-p", "-u"], cwd=tmp_path, check=False)
    with pytest.raises(PermissionError):
        subprocess.run("kexec -p -u", shell=True, cwd=tmp_path, check=False)
    with pytest.raises(PermissionError):
        os.execv(str(fake), [str(fake)])
    with pytest.raises(PermissionError):
        os.system(f"cd {tmp_path} && kexec -p -u")
    assert not (tmp_path / "ran").exists()
    assert len(kexec_guard) == 4 and kexec_guard[2].startswith("os.execv(")
    kexec_guard.clear()


def test_the_guard_catches_the_running_kernel(kexec_guard: list[str]) -> None:
    with pytest.raises(kexec.KexecForbidden):
        live.RUNNING.syscall(320, -1, -1, 0, None, 3)
    assert kexec_guard == ["live kexec_file_load(flags=0x3)"]
    kexec_guard.clear()


def test_child_processes_refuse_too() -> None:
    # The CLI run as a subprocess inherits MKKDUMPRD_FORBID_KEXEC from the guard.
    code = "import os; print(os.environ.get('MKKDUMPRD_FORBID_KEXEC'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "1"
