"""The one door to the running kernel's kexec calls and to crashing it.

kexec_file_load (`kexec.real_syscall`), kexec-tools (`kexec_tools.run_kexec`) and the
sysrq crash of `mkkdumprd test` (`real_crash`) act on the kernel this process runs on.
Every command that loads, unloads or crashes (load, unload, start, stop, reload, restart,
test, `python3 -m mkkdumprd.loader`) gets them from `kernel_for`, which
hands them out only when the root is the running system's and no dry run is asked for.
Otherwise it returns None and the command reports what it would have done: `--root DIR`
names a system's files (an image tree, a chroot being prepared, a test's fake tree), never
the kernel running here, and no program is ever run from DIR. This module is the only one
that refers to the real calls (tests/unit/test_loader_live.py checks that).

Tests replace RUNNING: tests/conftest.py makes every use of the real one fail the test, and
a test that simulates a machine sets RUNNING to its fake tree and fake calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.errors import OperationError
from mkkdumprd.loader import kexec
from mkkdumprd.loader.kexec import SyscallFn, real_syscall
from mkkdumprd.loader.kexec_tools import KexecRunner, run_kexec

SYSRQ_TRIGGER = "/proc/sysrq-trigger"


def _crash_forbidden() -> str | None:
    return kexec._forbidden()


def real_crash() -> None:
    """Crash this machine now, as kdumpctl test does (`echo c > /proc/sysrq-trigger`)."""
    why = _crash_forbidden()
    if why is not None:
        raise kexec.KexecForbidden(f"refusing to crash this machine for real: {why}")
    with open(SYSRQ_TRIGGER, "w") as f:
        f.write("c")


@dataclass(frozen=True)
class Kernel:
    """A kernel's kexec calls and the root of the system it runs."""

    root: Path
    syscall: SyscallFn       # kexec_file_load
    runner: KexecRunner      # kexec-tools, for kernels without kexec_file_load
    crash: Callable[[], None] = real_crash     # sysrq c: the real crash of `mkkdumprd test`


RUNNING = Kernel(Path("/"), real_syscall, run_kexec, real_crash)


def same_root(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def in_chroot(proc: Path = Path("/proc")) -> bool:
    """Whether this process's / is not init's / (systemd-detect-virt --chroot's test).

    Inside a chroot the running kernel is the outer machine's: a package hook or an
    Ansible run preparing an image tree must never load into it or crash it. When
    /proc/1/root cannot be read (no /proc, not root), nothing is known: False.
    """
    try:
        init_root = os.stat(proc / "1" / "root")
        own_root = os.stat("/")
    except OSError:
        return False
    return (init_root.st_dev, init_root.st_ino) != (own_root.st_dev, own_root.st_ino)


def kernel_for(root: Path, *, dry_run: bool = False) -> Kernel | None:
    """The running kernel when `root` is its system and this is no dry run, else None."""
    if dry_run or not same_root(root, RUNNING.root):
        return None
    if RUNNING.syscall is real_syscall and in_chroot():
        raise OperationError("this process runs in a chroot: the running kernel belongs to "
                             "the machine outside it, so it is not loaded, unloaded or "
                             "crashed from here (use --dry-run, or run on that machine)")
    if RUNNING.syscall is real_syscall and os.geteuid() != 0:
        # The kernel would say EPERM after the plan; say it first, touching nothing.
        raise OperationError("loading or unloading the crash kernel needs root "
                             "(CAP_SYS_BOOT); run it as root")
    return RUNNING


def why_not(root: Path, *, dry_run: bool = False) -> str:
    """Why `kernel_for` gave no kernel, for the report line."""
    if dry_run:
        return "dry run"
    return f"--root {root} is not the running system"
