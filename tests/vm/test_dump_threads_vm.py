"""A 2-vCPU guest dumps on both CPUs: a zlib collector (`makedumpfile -c`, the one the capture
script gives threads), nr_cpus=2 asked for in /etc/mkkdumprd/cmdline.conf (issue 24).

mkkdumprd keeps nr_cpus=1 by default (data/arch/x86_64.toml: no gain measured under TCG
here), so the administrator's CMDLINE_APPEND="nr_cpus=2" asks for two; the guest's own
loader (a bare python3) keeps it and adds disable_cpu_apicid=0. The crash runs on CPU 0
(the boot CPU, which disable_cpu_apicid= would keep out otherwise), the capture script sees
two CPUs online and runs makedumpfile --num-threads 2 with libgcc_s preloaded. The vmcore
is read back whole on the host: re-filtered uncompressed by this machine's makedumpfile,
which decompresses every page (makedumpfile issue #15 reports corrupt pages with
--num-threads), and its log holds the sysrq crash.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks, vmcore
from tests.vm.harness import python_guest as pg
from tests.vm.harness.qemu import VM, Drive, VMSpec

LOAD = f"{pg.LOADER} load --kernel /boot/vmlinuz --initrd /boot/capture.img"
TIMEOUT = 400.0


@pytest.mark.vm
def test_two_cpus_dump_with_threads(kernel: Kernel, tmp_path: Path,
                                    build_capture: BuildImage) -> None:
    fs_uuid = str(uuid.uuid4())
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /var/crash\ncore_collector makedumpfile -c --message-level 7 -d 31\n")
    image = build_capture(["-c", str(conf), "--target", f"local:UUID={fs_uuid}:/var/crash"],
                          tmp_path / "capture.img", drivers=["ext4"])
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    script = pg.init_script([
        pg.step("conf", "mkdir -p /etc/mkkdumprd && echo 'CMDLINE_APPEND=\"nr_cpus=2\"' "
                        ">/etc/mkkdumprd/cmdline.conf"),
        pg.step("dry", f"{LOAD} --dry-run"),
        pg.step("load", LOAD),
    ], crash=True, crash_on_boot_cpu=True)
    first = pg.build_python_first_stage(kernel.vmlinuz, image, tmp_path / "first.img", script)
    spec = VMSpec(kernel.vmlinuz, first, "console=ttyS0 crashkernel=256M panic=-1 loglevel=4",
                  drives=(Drive(disk),), cpus=2)

    with VM(spec, tmp_path / "console.log", TIMEOUT) as vm:
        vm.wait_for(f"{pg.CRASHING_MARKER}|{pg.STEP_END} load")
        steps = pg.parse_steps(vm.console())
        report = "\n".join(f"--- {s.name} rc={s.rc}\n{s.output}" for s in steps.values())
        cmdline = re.search(r"^  cmdline     (.*)$", steps["dry"].output, re.M)
        assert cmdline and steps["load"].rc == 0, report
        words = cmdline.group(1).split()
        assert "nr_cpus=2" in words and "disable_cpu_apicid=0" in words, report
        assert "nr_cpus=1" not in words, report
        assert "/etc/mkkdumprd/cmdline.conf:1 CMDLINE_APPEND" in steps["dry"].output, report
        vm.wait_exit()
        console = vm.console()

    after = console.split(pg.CRASHING_MARKER, 1)[-1]
    assert re.search(r"kdump: saving vmcore: makedumpfile .*--num-threads 2\s*$", after,
                     re.M), after[-3000:]
    assert "kdump: dump saved to" in after and "pthread_exit" not in after, after[-3000:]
    dumps = disks.ext4_find_dumps(disk)
    assert len(dumps) == 1, f"dump dirs {dumps}; console:\n{after[-3000:]}"
    vmc = disks.ext4_dump(disk, f"/var/crash/{dumps[0]}/vmcore", tmp_path / "vmcore")
    plain = tmp_path / "vmcore.plain"
    r = subprocess.run(["makedumpfile", "-d", "31", "--message-level", "4", str(vmc),
                        str(plain)], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and not re.search(r"fail|error|invalid", out, re.I), out
    assert plain.stat().st_size > 0
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore")
