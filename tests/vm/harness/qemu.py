"""Run qemu-system-x86_64 under TCG with the serial console captured to a log file.

The console goes to a file (QEMU's stdout with -nographic) that a test polls for markers,
so a hung guest never blocks the test: every wait has a deadline, and on the hard timeout
the QEMU process we started is killed by its PID (its process group, which holds only the
guestfwd relays QEMU spawned itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

QEMU = "qemu-system-x86_64"
# KVM hangs on this kind of machine; TCG everywhere (DESIGN "Known pitfalls").
BASE_ARGS = ("-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
             "-nographic", "-no-reboot")


class VMError(AssertionError):
    """A guest did not do what the test waited for; the message carries the console tail."""


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        # CI installs QEMU (dev/setup): a missing binary is a broken setup, never a skip.
        raise VMError(f"{QEMU} not found on PATH; run dev/setup (apt package qemu-system-x86)")
    return path


@dataclass(frozen=True)
class Drive:
    """A disk image attached as a virtio block device (/dev/vda, /dev/vdb, ... in order)."""

    path: Path
    fmt: str = "raw"


@dataclass(frozen=True)
class VMSpec:
    kernel: Path
    initrd: Path
    append: str
    drives: tuple[Drive, ...] = ()
    memory_mb: int = 1024
    # Only user networking with restrict=on; guestfwd entries as "tcp:IP:PORT-cmd:..." strings.
    guestfwd: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = field(default=())

    def argv(self) -> list[str]:
        args = [qemu_binary(), *BASE_ARGS, "-m", str(self.memory_mb),
                "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", self.append]
        for d in self.drives:
            args += ["-drive", f"file={d.path},format={d.fmt},if=virtio,cache=unsafe"]
        if self.guestfwd:
            fwd = ",".join(f"guestfwd={g.replace(',', ',,')}" for g in self.guestfwd)
            args += ["-netdev", f"user,id=n0,restrict=on,{fwd}",
                     "-device", "virtio-net-pci,netdev=n0"]
        else:
            args += ["-nic", "none"]
        return args + list(self.extra_args)


class VM:
    """One running QEMU. Use as a context manager so it is always killed."""

    def __init__(self, spec: VMSpec, log: Path, timeout: float) -> None:
        self.spec = spec
        self.log = log
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> VM:
        argv = self.spec.argv()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        (self.log.with_suffix(".cmd")).write_text(" ".join(_quote(a) for a in argv) + "\n")
        with open(self.log, "wb") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self._started = time.monotonic()
        return self

    def __enter__(self) -> VM:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "VM not started"
        return self._proc.pid

    def kill(self) -> None:
        p = self._proc
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)    # the group we created: QEMU and its relays
        p.wait()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _remaining(self) -> float:
        return self.timeout - self.elapsed

    # console ---------------------------------------------------------------------------
    def console(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.console().splitlines()[-lines:])

    def wait_for(self, pattern: str, timeout: float | None = None) -> re.Match[str]:
        """Wait until the console matches the regex `pattern`; fail with the console tail."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + min(timeout or self.timeout, self._remaining())
        assert self._proc is not None, "VM not started"
        while True:
            m = rx.search(self.console())
            if m:
                return m
            if self._proc.poll() is not None:
                m = rx.search(self.console())   # output written just before exit
                if m:
                    return m
                raise VMError(f"QEMU exited (rc {self._proc.returncode}) before the console "
                              f"showed {pattern!r}; console tail:\n{self.tail()}")
            if time.monotonic() >= deadline:
                self.kill()
                raise VMError(f"no {pattern!r} on the console within "
                              f"{self.elapsed:.0f} s; QEMU killed; console tail:\n{self.tail()}")
            time.sleep(0.2)

    def wait_exit(self, timeout: float | None = None) -> int:
        """Wait for QEMU to exit (the guest powered off or rebooted under -no-reboot)."""
        assert self._proc is not None, "VM not started"
        budget = max(0.0, min(timeout or self.timeout, self._remaining()))
        try:
            return self._proc.wait(budget)
        except subprocess.TimeoutExpired:
            self.kill()
            raise VMError(f"QEMU still running after {self.elapsed:.0f} s; killed; "
                          f"console tail:\n{self.tail()}") from None


def run_vm(spec: VMSpec, log: Path, timeout: float) -> tuple[int, str]:
    """Boot, wait for QEMU to exit on its own within `timeout`, return (rc, console)."""
    with VM(spec, log, timeout) as vm:
        rc = vm.wait_exit()
        return rc, vm.console()


def _quote(a: str) -> str:
    return a if re.fullmatch(r"[\w@%+=:,./-]+", a) else "'" + a.replace("'", "'\\''") + "'"


def kernel_args(*parts: str | Sequence[str]) -> str:
    out: list[str] = []
    for p in parts:
        out.extend([p] if isinstance(p, str) else p)
    return " ".join(x for x in out if x)
