"""crashkernel=,cma and ,high/,low with Debian unstable's newest kernel, proven by a crash.

For a 1 GiB and a 4 GiB guest, `mkkdumprd crashkernel recommend --json` is asked for the
words (the kernel's config, /usr/lib/modules/KVER/config, has CMA; the default collector
drops user pages), the guest boots with exactly those words, the project's loader loads
the capture image `mkkdumprd build` made, sysrq crashes it and the vmcore is read back. A
6 GiB guest does the same with the recommended ,high/,low words and shows the reservation
above 4 GiB in /proc/iomem. Each guest boots the 7.x kernel under TCG twice (first and
capture kernel) and waits the kernel's 10 s CMA DMA pause: 1.5-2.5 min each, so slow.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel, debian_sid_kernel
from tests.vm.conftest import BuildImage, run_mkkdumprd
from tests.vm.harness import disks, vmcore
from tests.vm.harness import python_guest as pg
from tests.vm.harness.qemu import VM, Drive, VMSpec

LOAD = f"{pg.LOADER} load --kernel /boot/vmlinuz --initrd /boot/capture.img"
TIMEOUT = 900.0
MiB = 1 << 20


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    """Overrides the default test kernel: Debian sid's 7.x cloud kernel (CONFIG_CMA=y)."""
    return debian_sid_kernel()


def _recommend(kernel: Kernel, image: Path, mem: str) -> dict[str, object]:
    r = run_mkkdumprd(["crashkernel", "recommend", "--json", "--arch", "x86_64",
                       "--mem", mem, "--kver", kernel.kver, "--kernel", str(kernel.vmlinuz),
                       "--image", str(image), "--root", str(kernel.root)])
    assert r.returncode == 0, r.stderr
    data: dict[str, object] = json.loads(r.stdout)
    return data


def _crash_cycle(kernel: Kernel, tmp_path: Path, image: Path, fs_uuid: str, mem_mb: int,
                 words: str) -> tuple[dict[str, pg.Step], str, Path]:
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    script = pg.init_script([
        pg.step("iomem", "grep -i crash /proc/iomem"),
        # the new name first, the compat one if the kernel has only that
        pg.step("cma", "cat /sys/kernel/kexec/crash_cma_ranges 2>/dev/null || "
                "cat /sys/kernel/kexec_crash_cma_ranges"),
        pg.step("load", LOAD),
        pg.step("loaded", "cat /sys/kernel/kexec_crash_loaded"),
    ], crash=True)
    first = pg.build_python_first_stage(kernel.vmlinuz, image, tmp_path / "first.img", script)
    spec = VMSpec(kernel.vmlinuz, first, f"console=ttyS0 panic=-1 {words}",
                  drives=(Drive(disk),), memory_mb=mem_mb)
    with VM(spec, tmp_path / "console.log", TIMEOUT) as vm:
        vm.wait_for(f"{pg.CRASHING_MARKER}|{pg.STEP_END} loaded")
        steps = pg.parse_steps(vm.console())
        vm.wait_exit()
        console = vm.console()
    return steps, console, disk


def _assert_dump(disk: Path, tmp_path: Path, console: str) -> None:
    dumps = disks.ext4_find_dumps(disk)
    assert len(dumps) == 1, f"dump dirs {dumps}; console:\n{console[-4000:]}"
    files = {e.name for e in disks.ext4_ls(disk, f"/var/crash/{dumps[0]}")}
    assert "vmcore" in files and "vmcore-incomplete" not in files, sorted(files)
    vmc = disks.ext4_dump(disk, f"/var/crash/{dumps[0]}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore")


def _iomem_ranges(text: str) -> list[tuple[int, int]]:
    return [(int(a, 16), int(b, 16)) for a, b in
            re.findall(r"([0-9a-f]+)-([0-9a-f]+) : Crash kernel", text)]


@pytest.mark.vm
@pytest.mark.long  # 90-120 s per size under TCG on a loaded host (two boots of 7.x, 10 s CMA wait)
@pytest.mark.parametrize("mem_mb", [1024, 4096])
def test_cma_words_from_recommend_dump(kernel: Kernel, tmp_path: Path,
                                       build_capture: BuildImage, mem_mb: int) -> None:
    fs_uuid = str(uuid.uuid4())
    image = build_capture(["--target", f"local:UUID={fs_uuid}:/var/crash"],
                          tmp_path / "capture.img", drivers=["ext4"])
    rec = _recommend(kernel, image, f"{mem_mb}M")
    assert rec["layout"] == "cma", rec
    words = str(rec["cmdline"])
    fixed, cma = int(str(rec["fixed_bytes"])), int(str(rec["cma_bytes"]))
    assert cma > 0 and fixed <= 80 * MiB, rec
    print(f"\n{mem_mb} MiB guest: {words} (fixed {fixed // MiB} MiB, CMA {cma // MiB} MiB)")

    steps, console, disk = _crash_cycle(kernel, tmp_path, image, fs_uuid, mem_mb, words)
    report = "\n".join(f"--- {s.name} rc={s.rc}\n{s.output}" for s in steps.values())
    ranges = _iomem_ranges(steps["iomem"].output)
    assert sum(b - a + 1 for a, b in ranges) == fixed, report   # CMA is not in /proc/iomem
    cma_ranges = [(int(a, 16), int(b, 16)) for a, b in
                  re.findall(r"^([0-9a-f]+)-([0-9a-f]+)$", steps["cma"].output, re.M)]
    assert sum(b - a + 1 for a, b in cma_ranges) == cma, report
    assert f"crashkernel CMA reserved: {cma // MiB} MB" in console, report
    assert steps["load"].rc == 0 and steps["loaded"].output.strip() == "1", report
    _assert_dump(disk, tmp_path, console)


@pytest.mark.vm
@pytest.mark.long  # ~140 s under TCG with 6 GiB of guest RAM
def test_high_low_words_from_recommend_dump(kernel: Kernel, tmp_path: Path,
                                            build_capture: BuildImage) -> None:
    fs_uuid = str(uuid.uuid4())
    image = build_capture(["--target", f"local:UUID={fs_uuid}:/var/crash"],
                          tmp_path / "capture.img", drivers=["ext4"])
    # With --mem and no /proc/iomem, recommend assumes 3 GiB below 4 GiB (layout.py); the
    # harness's q35 guest has 2 GiB there, so a 6 GiB guest's RAM lies mostly above 4 GiB
    # either way and the bulk goes high. --no-cma: ,high alone here.
    r = run_mkkdumprd(["crashkernel", "recommend", "--json", "--arch", "x86_64",
                       "--mem", "6G", "--kver", kernel.kver, "--kernel", str(kernel.vmlinuz),
                       "--image", str(image), "--root", str(kernel.root), "--no-cma"])
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["layout"] == "high", rec
    words = str(rec["cmdline"])
    assert ",high" in words and ",low" in words, rec
    print(f"\n6144 MiB guest: {words}")

    steps, console, disk = _crash_cycle(kernel, tmp_path, image, fs_uuid, 6144, words)
    report = "\n".join(f"--- {s.name} rc={s.rc}\n{s.output}" for s in steps.values())
    ranges = _iomem_ranges(steps["iomem"].output)
    high = [r for r in ranges if r[0] >= 1 << 32]
    low = [r for r in ranges if r[1] < 1 << 32]
    assert high and sum(b - a + 1 for a, b in high) == rec["fixed_bytes"], report
    assert low and sum(b - a + 1 for a, b in low) == rec["low_bytes"], report
    assert steps["load"].rc == 0, report
    _assert_dump(disk, tmp_path, console)
