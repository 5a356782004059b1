"""The harness proven on its own, with a capture image it assembles itself.

If these pass and the product tests fail, the product is at fault, not the harness.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from mkkdumprd.image.spec import ImageSpec
from tests.support.debian_kernel import Kernel
from tests.vm.harness import disks, vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.handmade import DONE_MARKER, build_handmade_capture
from tests.vm.harness.images import busybox_entries, init_entry, write_initramfs
from tests.vm.harness.qemu import VM, VMError, VMSpec


@pytest.mark.vm
def test_selftest_local_ext4(kernel: Kernel, tmp_path: Path) -> None:
    cap = build_handmade_capture(kernel.kmoddir, kernel.kver, tmp_path / "cap.img", "local")
    disk = disks.make_ext4(tmp_path / "disk.img", str(uuid.uuid4()),
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    run = crash_cycle(kernel, cap, [disk], tmp_path)
    assert DONE_MARKER in run.console, run.console[-3000:]
    [dump] = disks.ext4_find_dumps(disk)
    vmc = disks.ext4_dump(disk, f"/var/crash/{dump}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc))


@pytest.mark.vm
def test_selftest_raw(kernel: Kernel, tmp_path: Path) -> None:
    cap = build_handmade_capture(kernel.kmoddir, kernel.kver, tmp_path / "cap.img", "raw")
    disk = disks.make_raw(tmp_path / "raw.img")
    run = crash_cycle(kernel, cap, [disk], tmp_path)
    assert DONE_MARKER in run.console, run.console[-3000:]
    vmc = disks.unflatten_raw(disk, tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc))


@pytest.mark.vm
def test_hung_guest_is_killed_at_its_deadline(kernel: Kernel, tmp_path: Path) -> None:
    spec = ImageSpec()
    spec.extend(busybox_entries())
    spec.add(init_entry("#!/bin/sh\nexport PATH=/bin:/usr/bin\necho GUEST-HANGS\n"
                        "while :; do sleep 60; done\n"))
    image = write_initramfs(spec, tmp_path / "hang.img")
    vm = VM(VMSpec(kernel.vmlinuz, image, "console=ttyS0 quiet", memory_mb=512),
            tmp_path / "console.log", timeout=120)
    with vm:
        vm.wait_for("GUEST-HANGS")
        with pytest.raises(VMError, match="QEMU killed"):
            vm.wait_for("never printed", timeout=2)
        with pytest.raises(ProcessLookupError):
            os.kill(vm.pid, 0)     # killed and reaped, not left behind
