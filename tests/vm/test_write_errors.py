"""A disk that fails writes under the dump: no file is called vmcore, failure_action runs.

makedumpfile writes through the page cache, so its own status says nothing about the disk;
only a flush of the file does. QEMU's blkdebug fails every write that covers one of the
chosen sectors, which lie in the free space the vmcore's data goes to (from 16 MiB on, so
that the small files and directories written first near the start of the filesystem, and
the journal, are not hit).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER

LABEL = "kdumptest"
DATA_FROM = 16 << 20


def _failing_sectors(image: Path, every: int, offset: int) -> list[int]:
    """One sector every `every` bytes (from `offset` within each free extent) of the free
    space above DATA_FROM."""
    sectors = []
    for start, end in disks.ext4_free_ranges(image):
        pos = max(start, DATA_FROM) + offset
        while pos < end:
            sectors.append(pos // 512)
            pos += every
    assert sectors, f"no free space above {DATA_FROM} in {image}"
    return sectors


# virtio-blk has one error status, so the guest sees EIO for either errno; the cases differ in
# what QEMU's block layer does with it (ENOSPC would pause the VM without werror=report) and
# in which sectors fail. ~23 s each alone, 90-140 s with the machine's other jobs.
@pytest.mark.vm
@pytest.mark.parametrize(("errno", "every", "offset"), [
    (5, 512 << 10, 0),           # EIO, every 512 KiB
    (28, 1 << 20, 300 << 10),    # ENOSPC, every MiB, shifted
], ids=["EIO", "ENOSPC"])
def test_write_errors_leave_no_vmcore(kernel: Kernel, tmp_path: Path,
                                      build_capture: BuildImage, errno: int, every: int,
                                      offset: int) -> None:
    # failure_action and final_action differ, so the console tells which path was taken
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ext4 LABEL={LABEL}\npath /var/crash\nfailure_action poweroff\n"
                    "final_action reboot\n")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img")
    disk = disks.make_ext4(tmp_path / "disk.img", "5e1f0d2c-1111-4222-8333-944455556666",
                           size_mb=128, label=LABEL,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    drive = disks.blkdebug_drive(disk, tmp_path / "blkdebug.conf", errno,
                                 _failing_sectors(disk, every, offset))

    run = crash_cycle(kernel, image, [], tmp_path, extra_args=drive,
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout=10")

    capture = run.console.split(LOADED_MARKER, 1)[1]
    tail = capture[-5000:]
    assert re.search(r"I/O error|IO error", capture), f"no write error was injected:\n{tail}"
    assert "kdump: dump saved" not in capture, f"a damaged dump was reported saved:\n{tail}"
    assert re.search(r"kdump: dump failed: .*vmcore-incomplete is left and is not a complete "
                     r"dump", capture), f"no console line says the dump is incomplete:\n{tail}"
    assert "failure action: powering off" in capture and "reboot: Power down" in capture, tail
    assert "final action" not in capture, tail
    (dump,) = disks.ext4_find_dumps(disk)
    names = {e.name for e in disks.ext4_ls(disk, f"/var/crash/{dump}")}
    assert "vmcore" not in names, f"{names}\n{tail}"
    assert "vmcore-incomplete" in names, f"{names}\n{tail}"
