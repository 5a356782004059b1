"""Run QEMU with the guest's serial console streamed to a log file.

The console goes to a file (QEMU's stdout with -nographic) that the caller polls for
markers, so a hung guest never blocks: every wait has a deadline, and on the hard timeout
the QEMU process we started is killed by its PID (its process group, which holds only the
guestfwd relays QEMU spawned itself). The file is kept: reports name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mkkdumprd.errors import OperationError, UsageError

QEMU = "qemu-system-x86_64"
QEMU_PACKAGES = "apt: qemu-system-x86, dnf: qemu-system-x86-core"
# TCG by default: KVM hangs on some nested machines (DESIGN "Known pitfalls"); `accel()`
# picks KVM only when /dev/kvm answers.
BASE_ARGS = ("-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
             "-nographic", "-no-reboot")
_KVM_GET_API_VERSION = 0xAE00
_KVM_API_VERSION = 12

# The disk buses a scratch disk can sit on, and the capture-kernel driver each needs.
BUS_DRIVERS = {
    "virtio": ("virtio_blk",),
    "scsi": ("virtio_scsi", "sd_mod"),
    "nvme": ("nvme",),
    "sata": ("ahci", "sd_mod"),
}


class VMError(OperationError):
    """A guest did not do what the caller waited for; the message carries the console tail."""


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise UsageError(f"{QEMU} not found on PATH; install QEMU ({QEMU_PACKAGES})")
    return path


def kvm_usable(dev: str = "/dev/kvm") -> bool:
    """/dev/kvm opens read-write and speaks the stable KVM API."""
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _KVM_GET_API_VERSION) == _KVM_API_VERSION
    except OSError:
        return False
    finally:
        os.close(fd)


def accel(choice: str = "auto") -> str:
    """'kvm' or 'tcg' for `-accel`: `auto` is KVM when /dev/kvm works, else TCG."""
    if choice == "auto":
        return "kvm" if kvm_usable() else "tcg"
    if choice not in ("kvm", "tcg"):
        raise ValueError(f"accelerator {choice!r}")
    return choice


@dataclass(frozen=True)
class Drive:
    """A disk image; on the virtio bus it is /dev/vda, /dev/vdb, ... in order."""

    path: Path
    fmt: str = "raw"
    bus: str = "virtio"

    def args(self, index: int) -> list[str]:
        if self.bus == "virtio":
            return ["-drive", f"file={self.path},format={self.fmt},if=virtio,cache=unsafe"]
        node = f"disk{index}"
        drive = ["-drive", f"file={self.path},format={self.fmt},if=none,id={node},cache=unsafe"]
        if self.bus == "nvme":
            return [*drive, "-device", f"nvme,drive={node},serial=mkkdumprd{index}"]
        if self.bus == "sata":    # q35's own AHCI controller
            return [*drive, "-device", f"ide-hd,drive={node},bus=ide.{index}"]
        if self.bus == "scsi":
            return [*drive, "-device", f"virtio-scsi-pci,id=scsi{index}",
                    "-device", f"scsi-hd,drive={node},bus=scsi{index}.0"]
        raise ValueError(f"disk bus {self.bus!r}; one of {', '.join(BUS_DRIVERS)}")


@dataclass(frozen=True)
class VMSpec:
    kernel: Path
    initrd: Path
    append: str
    drives: tuple[Drive, ...] = ()
    memory_mb: int = 1024
    # Only user networking with restrict=on; guestfwd entries as "tcp:IP:PORT-cmd:..." strings.
    guestfwd: tuple[str, ...] = ()
    # hostfwd entries, "tcp:127.0.0.1:PORT-:GUESTPORT": listening on this machine's
    # loopback only (anything else is refused).
    hostfwd: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = field(default=())
    accel: str = "tcg"
    # vCPUs; with TCG more than one runs multi-threaded (one host thread per vCPU).
    cpus: int = 1
    # User networking without restrict=on (--real-target to a server elsewhere).
    open_network: bool = False

    def base_args(self) -> list[str]:
        if self.accel == "tcg":
            args = list(BASE_ARGS)
            if self.cpus > 1:
                args[args.index("-accel") + 1] = "tcg,thread=multi"
        else:
            args = ["-machine", "q35", "-accel", self.accel, "-cpu", "host", "-smp", "1",
                    "-nographic", "-no-reboot"]
        args[args.index("-smp") + 1] = str(self.cpus)
        return args

    def argv(self) -> list[str]:
        args = [qemu_binary(), *self.base_args(), "-m", str(self.memory_mb),
                "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", self.append]
        for i, d in enumerate(self.drives):
            args += d.args(i)
        for h in self.hostfwd:
            if not h.startswith("tcp:127.0.0.1:"):
                raise UsageError(f"hostfwd {h!r}: only tcp:127.0.0.1:PORT-:PORT")
        fwd = ([f"guestfwd={g.replace(',', ',,')}" for g in self.guestfwd]
               + [f"hostfwd={h}" for h in self.hostfwd])
        if self.open_network or fwd:
            restrict = [] if self.open_network else ["restrict=on"]
            args += ["-netdev", ",".join(["user", "id=n0", *restrict, *fwd]),
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

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

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
