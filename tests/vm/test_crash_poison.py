"""A page the first kernel marked hardware-poisoned never stops the dump.

The first kernel poisons one page of a process with madvise(MADV_HWPOISON) (python3's
ctypes, as root; CONFIG_MEMORY_FAILURE=y in Debian's kernel) and /proc/meminfo counts it as
HardwareCorrupted. It then crashes; the capture image `mkkdumprd build` made runs
makedumpfile with -d 1, which would keep that user page, and --message-level 31 for its
report: makedumpfile excludes the page as "Hwpoison pages" (whatever -d says) and the
vmcore is complete. ~3 min under TCG (a 768 MiB guest dumped with only zero pages
dropped), so slow.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks, vmcore
from tests.vm.harness import python_guest as pg
from tests.vm.harness.qemu import VM, Drive, VMSpec

LOAD = f"{pg.LOADER} load --kernel /boot/vmlinuz --initrd /boot/capture.img"
# mmap one anonymous page, fill it (so it is neither zero nor free), poison it.
POISON = ("python3 -c '"
          "import ctypes as c; l = c.CDLL(None, use_errno=True); "
          "l.mmap.restype = c.c_void_p; "
          "l.mmap.argtypes = [c.c_void_p, c.c_size_t, c.c_int, c.c_int, c.c_int, c.c_long]; "
          "a = l.mmap(None, 4096, 3, 0x22, -1, 0); c.memset(a, 0x50, 4096); "
          "r = l.madvise(c.c_void_p(a), c.c_size_t(4096), 100); "
          "print(\"madvise\", r, c.get_errno())'")


@pytest.mark.vm
@pytest.mark.long  # ~3 min under TCG (190 s measured)
def test_poisoned_page_is_excluded_and_the_dump_completes(
        kernel: Kernel, tmp_path: Path, build_capture: BuildImage) -> None:
    fs_uuid = str(uuid.uuid4())
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ext4 UUID={fs_uuid}\npath /var/crash\n"
                    "core_collector makedumpfile -l --message-level 31 -d 1\n")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=["ext4"])
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    script = pg.init_script([
        pg.step("poison", POISON),
        pg.step("meminfo", "grep HardwareCorrupted /proc/meminfo"),
        pg.step("load", LOAD),
    ], crash=True)
    first = pg.build_python_first_stage(kernel.vmlinuz, image, tmp_path / "first.img", script)
    spec = VMSpec(kernel.vmlinuz, first, "console=ttyS0 crashkernel=256M panic=-1",
                  drives=(Drive(disk),), memory_mb=768)
    with VM(spec, tmp_path / "console.log", 600.0) as vm:
        vm.wait_for(f"{pg.CRASHING_MARKER}|{pg.STEP_END} load")
        steps = pg.parse_steps(vm.console())
        vm.wait_exit()
        console = vm.console()
    report = "\n".join(f"--- {s.name} rc={s.rc}\n{s.output}" for s in steps.values())
    assert "madvise 0 0" in steps["poison"].output, report
    assert re.search(r"HardwareCorrupted:\s+4 kB", steps["meminfo"].output), report
    assert steps["load"].rc == 0, report
    after = console.split(pg.CRASHING_MARKER, 1)[-1]
    m = re.search(r"Hwpoison pages\s*:\s*0x([0-9a-f]+)", after)
    assert m and int(m.group(1), 16) >= 1, after[-4000:]
    dumps = disks.ext4_find_dumps(disk)
    assert len(dumps) == 1, f"dump dirs {dumps}; console:\n{console[-4000:]}"
    files = {e.name for e in disks.ext4_ls(disk, f"/var/crash/{dumps[0]}")}
    assert "vmcore" in files and "vmcore-incomplete" not in files, sorted(files)
    vmc = disks.ext4_dump(disk, f"/var/crash/{dumps[0]}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore")
