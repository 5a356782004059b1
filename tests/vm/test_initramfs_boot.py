"""A real kernel unpacks an image written by our writer and runs its /init."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.image.spec import ImageSpec
from tests.support.debian_kernel import Kernel
from tests.vm.harness.images import busybox_entries, init_entry, write_initramfs
from tests.vm.harness.qemu import VM, VMSpec

MARKER = "MKKDUMPRD-TINY-IMAGE-BOOTED"

INIT = """#!/bin/sh
export PATH=/bin:/usr/bin
mount -t proc proc /proc
echo "{marker} cmdline=$(cat /proc/cmdline)"
poweroff -f
"""


@pytest.mark.vm
@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_kernel_runs_init_from_our_image(kernel: Kernel, tmp_path: Path,
                                          compression: str) -> None:
    spec = ImageSpec()
    spec.extend(busybox_entries())
    spec.add(init_entry(INIT.format(marker=MARKER)))
    image = write_initramfs(spec, tmp_path / f"tiny.{compression}", compression)

    vm_spec = VMSpec(kernel.vmlinuz, image, "console=ttyS0 panic=-1 loglevel=4 quiet",
                     memory_mb=512)
    with VM(vm_spec, tmp_path / "console.log", timeout=120) as vm:
        vm.wait_for(MARKER)
        assert vm.wait_exit() == 0
        console = vm.console()
    # Our /init ran (not a kernel fallback) and saw the command line we passed.
    assert f"{MARKER} cmdline=console=ttyS0" in console
    assert "Kernel panic" not in console
    assert "reboot: Power down" in console
