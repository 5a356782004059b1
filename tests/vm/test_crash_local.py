"""Crash a real kernel; the capture image mkkdumprd built saves the vmcore to an ext4 disk."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks, vmcore
from tests.vm.harness.crash import crash_cycle

DUMP_DIR = re.compile(r"127\.0\.0\.1-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")


@pytest.mark.vm
def test_local_ext4_dump(kernel: Kernel, tmp_path: Path, build_capture: BuildImage) -> None:
    fs_uuid = str(uuid.uuid4())
    # Built for another machine: the filesystem driver is named, as a user would.
    image = build_capture(["--target", f"local:UUID={fs_uuid}:/var/crash"],
                          tmp_path / "capture.img", drivers=["ext4"])
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))

    run = crash_cycle(kernel, image, [disk], tmp_path)

    dumps = disks.ext4_find_dumps(disk)
    assert len(dumps) == 1, f"dump dirs {dumps}; console:\n{run.console[-4000:]}"
    assert DUMP_DIR.fullmatch(dumps[0]), dumps[0]
    files = {e.name: e for e in disks.ext4_ls(disk, f"/var/crash/{dumps[0]}")}
    assert "vmcore" in files and "vmcore-dmesg.txt" in files, \
        f"{sorted(files)}; console:\n{run.console[-4000:]}"
    assert "vmcore-incomplete" not in files
    assert files["vmcore"].size > 1 << 20

    dmesg_txt = disks.ext4_dump(disk, f"/var/crash/{dumps[0]}/vmcore-dmesg.txt",
                                tmp_path / "vmcore-dmesg.txt").read_text(errors="replace")
    vmcore.assert_sysrq_crash(dmesg_txt, "vmcore-dmesg.txt")
    vmc = disks.ext4_dump(disk, f"/var/crash/{dumps[0]}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore")
