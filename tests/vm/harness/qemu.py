"""QEMU for the VM tests: the product's runner (mkkdumprd/vmtest/qemu.py), always TCG.

Kept under this name for the tests that import it; VMSpec defaults to `-accel tcg`.
"""

from __future__ import annotations

from mkkdumprd.vmtest.qemu import (
    BASE_ARGS,
    QEMU,
    VM,
    Drive,
    VMError,
    VMSpec,
    kernel_args,
    qemu_binary,
    run_vm,
)

__all__ = ["BASE_ARGS", "QEMU", "VM", "Drive", "VMError", "VMSpec", "kernel_args",
           "qemu_binary", "run_vm"]
