"""The loader's kexec_file_load path on arm64, for real: a small 6.1 kernel built from
Debian's linux-source with CONFIG_KEXEC_FILE (tests/support/custom_kernel.py) is the first
kernel; the project's loader in the guest loads Debian's arm64 kernel as the capture kernel
through kexec_file_load, as a raw Image and as Image.gz (which the syscall refuses, EINVAL:
the loader gunzips it into a memfd), unloads once, crashes; the cross-built capture image
saves the vmcore. Needs the kernel build tools (dev/setup-kernels); the first run builds
the kernel (minutes), later runs take it from the cache."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path

import pytest

from tests.support.custom_kernel import custom_kernel
from tests.support.foreign_sysroot import Sysroot, foreign_sysroot
from tests.vm.harness import disks
from tests.vm.harness.multiarch import (
    ForeignVMSpec,
    build_cross_capture,
    check_dump,
    first_kernel_append,
)
from tests.vm.harness.multiarch_python import build_loader_first_stage
from tests.vm.harness.python_guest import CRASHING_MARKER, init_script, parse_steps, step
from tests.vm.harness.qemu import VM, Drive

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.multiarch,
              pytest.mark.custom_kernel]

LOADER = "python3 -m mkkdumprd.loader --arch aarch64"


@pytest.fixture(scope="module")
def sysroot() -> Sysroot:
    return foreign_sysroot("aarch64")


def test_kexec_file_load_of_debian_arm64_kernel(sysroot: Sysroot, tmp_path: Path) -> None:
    first_kernel = custom_kernel("aarch64").image
    fs_uuid = str(uuid.uuid4())
    image = build_cross_capture(sysroot, f"local:UUID={fs_uuid}:/var/crash",
                                tmp_path / "capture.img")
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    gz = tmp_path / "Image.gz"
    gz.write_bytes(gzip.compress(sysroot.kernel.read_bytes(), compresslevel=1))
    script = init_script([
        step("load-raw", LOADER, "load", "--kernel", "/boot/vmlinuz",
             "--initrd", "/boot/capture.img"),
        step("status-raw", LOADER, "status"),
        step("unload", LOADER, "unload"),
        step("status-unloaded", LOADER, "status"),
        step("load-gz", LOADER, "load", "--kernel", "/boot/Image.gz",
             "--initrd", "/boot/capture.img"),
        step("status-gz", LOADER, "status", "--json"),
    ], crash=True)
    first = build_loader_first_stage(sysroot, image, tmp_path / "first.img", script,
                                     {"/boot/vmlinuz": sysroot.kernel, "/boot/Image.gz": gz})
    spec = ForeignVMSpec(first_kernel, first, first_kernel_append("aarch64", "256M"),
                         drives=(Drive(disk),), arch="aarch64")
    with VM(spec, tmp_path / "console.log", 400) as vm:
        vm.wait_for(CRASHING_MARKER)
        vm.wait_exit()
        console = vm.console()
    s = parse_steps(console)
    raw = s["load-raw"]
    assert raw.rc == 0 and "ENOSYS" not in raw.output, raw.output
    assert "loaded /boot/vmlinuz (as is) with /boot/capture.img" in raw.output
    assert "loaded via:   kexec_file_load" in s["status-raw"].output, s["status-raw"].output
    assert s["unload"].rc == 0 and s["status-unloaded"].rc == 3, s["unload"].output
    gzl = s["load-gz"]
    assert gzl.rc == 0 and "loaded /boot/Image.gz (gunzipped)" in gzl.output, gzl.output
    assert '"path": "kexec_file_load"' in s["status-gz"].output
    # The capture kernel is Debian's: its own headers from kexec_file_load, no _text fix.
    # The vmcore is the custom first kernel's (6.1.192 from linux-source-6.1).
    dump = check_dump(disk, tmp_path, sysroot, console, crashed_release="6.1.192")
    assert dump.size > 4 << 20
