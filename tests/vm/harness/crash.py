"""One kdump cycle in a VM: first kernel loads the capture image, crashes, capture kernel runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian_kernel import Kernel

from .first_stage import (
    CAPTURE_APPEND,
    FIRST_KERNEL_APPEND,
    LOAD_FAILED_MARKER,
    LOADED_MARKER,
    build_first_stage,
)
from .qemu import VM, Drive, VMError, VMSpec

# A -d 31 cycle takes ~20 s under TCG here; the rest is headroom for a loaded CI machine.
CYCLE_TIMEOUT = 240.0


@dataclass(frozen=True)
class CrashRun:
    console: str
    log: Path
    seconds: float


def crash_cycle(kernel: Kernel, capture_image: Path, disks: Sequence[Path], workdir: Path,
                capture_append: str = CAPTURE_APPEND, timeout: float = CYCLE_TIMEOUT,
                expect_exit: bool = True, log: Path | None = None,
                guestfwd: Sequence[str] = (), extra_args: Sequence[str] = ()) -> CrashRun:
    """Boot `kernel`, kexec-load it with `capture_image`, crash it, and wait for QEMU to end.

    `guestfwd` entries ("tcp:10.0.2.100:PORT-cmd:/bin/busybox nc 127.0.0.1 PORT") give the
    guest a restricted user network with a virtio NIC and only those forwards.
    The capture image decides how the VM ends: its final/failure action (reboot, poweroff)
    ends QEMU because of -no-reboot; so does a capture-kernel panic (panic=-1).
    `extra_args` go to QEMU as they are (e.g. a -drive that `disks` cannot express).
    """
    first = build_first_stage(kernel.vmlinuz, capture_image, workdir / "first-stage.img",
                              capture_append)
    spec = VMSpec(kernel.vmlinuz, first, FIRST_KERNEL_APPEND,
                  drives=tuple(Drive(d) for d in disks), guestfwd=tuple(guestfwd),
                  extra_args=tuple(extra_args))
    log = log or workdir / "console.log"
    with VM(spec, log, timeout) as vm:
        m = vm.wait_for(f"{LOADED_MARKER}|{LOAD_FAILED_MARKER}")
        if m.group(0) == LOAD_FAILED_MARKER:
            raise VMError(f"the first kernel could not load the capture image:\n{vm.tail()}")
        if expect_exit:
            vm.wait_exit()
        return CrashRun(vm.console(), log, vm.elapsed)
