"""The project's own kexec_file_load loader, run by a bare python3 inside a QEMU guest.

The first stage carries Debian's python3.11 and only the modules the loader imports
(harness/python_guest.py). One guest walks status -> load --dry-run -> load -> status ->
unload -> status -> load -> crash, and the capture image `mkkdumprd build` made writes a
vmcore the test reads back. Another guest, booted without crashkernel=, must get the
no-reservation sentence and exit 1.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from mkkdumprd.loader.load import NO_RESERVATION
from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks, vmcore
from tests.vm.harness import python_guest as pg
from tests.vm.harness.qemu import VM, Drive, VMSpec

LOAD = f"{pg.LOADER} load --kernel /boot/vmlinuz --initrd /boot/capture.img"
STATUS = f"{pg.LOADER} status"
# loglevel=4 hides the capture kernel's "Kernel command line:" (a notice); the second load
# raises it with --append, which also shows --append replacing the inherited loglevel=4.
FIRST_APPEND = "console=ttyS0 crashkernel=256M panic=-1 loglevel=4"
NO_RESERVATION_APPEND = "console=ttyS0 panic=-1 loglevel=4"
TIMEOUT = 300.0


def _step_report(steps: dict[str, pg.Step], console: str) -> str:
    done = "\n".join(f"--- {s.name} rc={s.rc}\n{s.output}" for s in steps.values())
    return f"steps:\n{done}\nconsole tail:\n{console[-3000:]}"


@pytest.mark.vm
def test_loader_load_unload_crash(kernel: Kernel, tmp_path: Path,
                                  build_capture: BuildImage) -> None:
    fs_uuid = str(uuid.uuid4())
    image = build_capture(["--target", f"local:UUID={fs_uuid}:/var/crash"],
                          tmp_path / "capture.img", drivers=["ext4"])
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    script = pg.init_script([
        pg.step("status0", STATUS),
        # Asked to pass elfcorehdr= it must still not: the kernel adds its own.
        pg.step("dry", f"{LOAD} --dry-run --append elfcorehdr=0x1000"),
        pg.step("after_dry", "cat /sys/kernel/kexec_crash_loaded"),
        pg.step("load", LOAD),
        pg.step("status1", STATUS),
        pg.step("unload", f"{pg.LOADER} unload"),
        pg.step("status2", STATUS),
        # Fedora's settings file adds a word (issue 21: the service's command line)
        pg.step("conf", "mkdir -p /etc/sysconfig && echo "
                        "'KDUMP_COMMANDLINE_APPEND=\"kdump_test_word=1\"' >/etc/sysconfig/kdump"),
        pg.step("load2", f"{LOAD} --append loglevel=6"),
        pg.step("after_load2", "cat /sys/kernel/kexec_crash_loaded"),
        pg.step("status3", STATUS),
    ], crash=True)
    first = pg.build_python_first_stage(kernel.vmlinuz, image, tmp_path / "first.img", script)
    spec = VMSpec(kernel.vmlinuz, first, FIRST_APPEND, drives=(Drive(disk),))

    with VM(spec, tmp_path / "console.log", TIMEOUT) as vm:
        vm.wait_for(f"{pg.CRASHING_MARKER}|{pg.STEP_END} status3")
        steps = pg.parse_steps(vm.console())
        report = _step_report(steps, vm.console())
        assert [*steps] == ["status0", "dry", "after_dry", "load", "status1", "unload",
                            "status2", "conf", "load2", "after_load2", "status3"], report

        s = steps["status0"]
        assert s.rc == 3 and "crash kernel: not loaded" in s.output, report
        assert "reservation:  256 MiB" in s.output, report

        s = steps["dry"]
        assert s.rc == 0 and "dry run: kexec_file_load not called" in s.output, report
        cmdline = re.search(r"^  cmdline     (.*)$", s.output, re.M)
        assert cmdline, report
        words = cmdline.group(1).split()
        assert not [w for w in words if w.startswith(("elfcorehdr", "crashkernel"))], report
        assert "console=ttyS0" in words and "nr_cpus=1" in words, report
        assert "flags       0x2 (KEXEC_FILE_ON_CRASH)" in s.output, report
        assert steps["after_dry"].output.strip() == "0", report

        s = steps["load"]
        assert s.rc == 0 and "loaded /boot/vmlinuz" in s.output, report
        s = steps["status1"]
        assert s.rc == 0 and "crash kernel: loaded" in s.output, report
        assert "kernel:       /boot/vmlinuz" in s.output, report
        assert "image:        /boot/capture.img" in s.output, report
        assert steps["unload"].rc == 0, report
        s = steps["status2"]
        assert s.rc == 3 and "crash kernel: not loaded" in s.output, report
        assert "stale record" not in s.output, report
        assert steps["load2"].rc == 0, report
        assert steps["after_load2"].output.strip() == "1", report
        assert ("  set by:     kdump_test_word=1 (/etc/sysconfig/kdump:1 "
                "KDUMP_COMMANDLINE_APPEND)") in steps["status3"].output.splitlines(), report

        vm.wait_exit()
        console = vm.console()

    # The capture kernel's own command line: exactly one elfcorehdr=, the kernel's.
    after = console.split(pg.CRASHING_MARKER, 1)[-1]
    seen = re.search(r"Kernel command line: (.*)", after)
    assert seen, f"capture kernel printed no command line; tail:\n{console[-3000:]}"
    assert seen.group(1).count("elfcorehdr=") == 1, seen.group(0)
    assert "crashkernel=" not in seen.group(1) and "loglevel=6" in seen.group(1), seen.group(0)
    assert "kdump_test_word=1" in seen.group(1).split(), seen.group(0)

    dumps = disks.ext4_find_dumps(disk)
    assert len(dumps) == 1, f"dump dirs {dumps}; console:\n{console[-4000:]}"
    files = {e.name: e for e in disks.ext4_ls(disk, f"/var/crash/{dumps[0]}")}
    assert "vmcore" in files and "vmcore-incomplete" not in files, sorted(files)
    vmc = disks.ext4_dump(disk, f"/var/crash/{dumps[0]}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore")


@pytest.mark.vm
def test_loader_without_reservation(kernel: Kernel, tmp_path: Path) -> None:
    # The reservation is checked before the image is read, so any file stands in for it.
    image = tmp_path / "capture.img"
    image.write_bytes(b"\0" * 4096)
    script = pg.init_script([
        pg.step("load", LOAD),
        pg.step("status", STATUS),
    ], crash=False)
    first = pg.build_python_first_stage(kernel.vmlinuz, image, tmp_path / "first.img", script)
    spec = VMSpec(kernel.vmlinuz, first, NO_RESERVATION_APPEND)

    with VM(spec, tmp_path / "console.log", TIMEOUT) as vm:
        vm.wait_for(pg.DONE_MARKER)
        steps = pg.parse_steps(vm.console())
        report = _step_report(steps, vm.console())

    s = steps["load"]
    assert s.rc == 1, report
    assert s.output.strip() == f"mkkdumprd: error: {NO_RESERVATION}", report
    s = steps["status"]
    assert s.rc == 3 and "crash kernel: not loaded" in s.output, report
    assert "reservation:  none (crashkernel= is missing" in s.output, report
