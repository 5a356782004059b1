"""The loader's kexec_file_load path on arm64, ppc64le (s390x and riscv64 below), for real: a
kernel built from Debian's linux-source with CONFIG_KEXEC_FILE (tests/support/custom_kernel.py)
is the first kernel; the project's loader in the guest loads Debian's kernel of the arch as the
capture kernel through kexec_file_load (arm64: raw Image, then Image.gz, which the syscall
refuses with EINVAL so the loader gunzips it into a memfd; ppc64le: the ELF vmlinux twice),
unloads once, crashes; the cross-built capture image saves the vmcore. Needs the kernel build
tools (dev/setup-kernels); the first run builds the kernel (minutes), later runs take it from
the cache."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.support.custom_kernel import custom_kernel
from tests.support.foreign_sysroot import Sysroot, foreign_sysroot
from tests.vm.harness.multiarch import (
    ForeignVMSpec,
    check_dump,
    ext4_dump_setup,
    first_kernel_append,
)
from tests.vm.harness.multiarch_python import build_loader_first_stage, run_loader_guest
from tests.vm.harness.multiarch_python_sid import build_sid_loader_first_stage, python_sysroot
from tests.vm.harness.python_guest import CRASHING_MARKER, init_script, step
from tests.vm.harness.qemu import Drive

# Not `multiarch`: that selection needs no kernel build; -m "multiarch or custom_kernel".
pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.custom_kernel]

# The second load: (path in the guest, what the loader says it did with it).
SECOND = {"aarch64": ("/boot/Image.gz", "gunzipped"), "ppc64le": ("/boot/vmlinuz", "as is")}


@pytest.mark.parametrize("arch", sorted(SECOND))
def test_kexec_file_load_of_the_debian_kernel(arch: str, tmp_path: Path) -> None:
    sysroot: Sysroot = foreign_sysroot(arch)
    loader = f"python3 -m mkkdumprd.loader --arch {arch}"
    second, how = SECOND[arch]
    first_kernel = custom_kernel(arch).image
    dump_to = ext4_dump_setup(sysroot, tmp_path)
    disk = dump_to.disk
    kernels = {"/boot/vmlinuz": sysroot.kernel}
    if second != "/boot/vmlinuz":
        gz = tmp_path / "Image.gz"
        gz.write_bytes(gzip.compress(sysroot.kernel.read_bytes(), compresslevel=1))
        kernels[second] = gz
    script = init_script([
        step("load-raw", loader, "load", "--kernel", "/boot/vmlinuz",
             "--initrd", "/boot/capture.img"),
        step("status-raw", loader, "status"),
        step("unload", loader, "unload"),
        step("status-unloaded", loader, "status"),
        step("load-gz", loader, "load", "--kernel", second,
             "--initrd", "/boot/capture.img"),
        step("status-gz", loader, "status", "--json"),
    ], crash=True)
    first = build_loader_first_stage(sysroot, dump_to.image, tmp_path / "first.img", script,
                                     kernels)
    spec = ForeignVMSpec(first_kernel, first, first_kernel_append(arch, "256M"),
                         drives=(Drive(disk),), arch=arch)
    run = run_loader_guest(spec, tmp_path)
    console, s = run.console, run.steps
    raw = s["load-raw"]
    assert raw.rc == 0 and "ENOSYS" not in raw.output, raw.output
    assert "loaded /boot/vmlinuz (as is) with /boot/capture.img" in raw.output
    assert "loaded via:   kexec_file_load" in s["status-raw"].output, s["status-raw"].output
    assert s["unload"].rc == 0 and s["status-unloaded"].rc == 3, s["unload"].output
    gzl = s["load-gz"]
    assert gzl.rc == 0 and f"loaded {second} ({how})" in gzl.output, gzl.output
    assert '"path": "kexec_file_load"' in s["status-gz"].output
    # The capture kernel is Debian's; the ELF headers are the first kernel's own work.
    # The vmcore is the custom first kernel's (6.1.192 from linux-source-6.1).
    dump = check_dump(disk, tmp_path, sysroot, console, crashed_release="6.1.192")
    assert dump.size > 4 << 20


def test_s390x_kexec_file_load_with_a_custom_kernel(tmp_path: Path) -> None:
    """s390x: Debian's kernels cannot dump at all, so the custom kernel is both the first and
    the capture kernel (virtio-ccw disk and ext4 built in; its modules_install tree is the
    build's kmoddir). Userland (busybox, makedumpfile, python3.11) is bookworm s390x."""
    sysroot: Sysroot = foreign_sysroot("s390x")
    kernel = custom_kernel("s390x")
    assert kernel.kmoddir is not None
    loader = "python3 -m mkkdumprd.loader --arch s390x"
    dump_to = ext4_dump_setup(
        sysroot, tmp_path, extra=("--kver", kernel.kver, "--kmoddir", str(kernel.kmoddir)),
        drivers=("virtio_blk", "ext4"))
    disk = dump_to.disk
    script = init_script([
        step("load", loader, "load", "--kernel", "/boot/vmlinuz",
             "--initrd", "/boot/capture.img"),
        step("status", loader, "status"),
    ], crash=True)
    first = build_loader_first_stage(sysroot, dump_to.image, tmp_path / "first.img", script,
                                     {"/boot/vmlinuz": kernel.image})
    spec = ForeignVMSpec(kernel.image, first, first_kernel_append("s390x", "256M"),
                         drives=(Drive(disk),), arch="s390x")
    run = run_loader_guest(spec, tmp_path)
    console, s = run.console, run.steps
    assert s["load"].rc == 0 and "ENOSYS" not in s["load"].output, s["load"].output
    assert "loaded /boot/vmlinuz (as is) with /boot/capture.img" in s["load"].output
    assert "loaded via:   kexec_file_load" in s["status"].output, s["status"].output
    dump = check_dump(disk, tmp_path, sysroot, console, crashed_release=kernel.kver)
    assert dump.size > 1 << 20


def test_riscv64_kexec_file_load_with_a_custom_kernel(tmp_path: Path) -> None:
    """riscv64: Debian's kernels have no KEXEC_FILE and riscv 6.1's kexec_file_load takes only
    an ELF vmlinux, so the custom kernel is both kernels: QEMU boots its Image, the loader
    loads its stripped ELF vmlinux. Userland is sid riscv64 with sid's python3 (3.14 here),
    its stdlib compiled by itself under qemu-user (multiarch_python_sid.py). The headers are
    the kernel's own work, so unlike the kexec_load path (test_multiarch_riscv64.py) the
    vmcore is complete and readable: riscv64 makedumpfile under qemu-user reads its log."""
    kernel = custom_kernel("riscv64")
    assert kernel.kmoddir is not None and kernel.elf is not None
    sysroot = Sysroot(python_sysroot("riscv64"), "riscv64", kernel.kver, kernel.elf)
    loader = "python3 -m mkkdumprd.loader"
    dump_to = ext4_dump_setup(
        sysroot, tmp_path, extra=("--kver", kernel.kver, "--kmoddir", str(kernel.kmoddir)),
        drivers=("virtio_mmio", "virtio_blk", "ext4"))
    disk = dump_to.disk
    script = init_script([
        step("load", loader, "load", "--kernel", "/boot/vmlinux",
             "--initrd", "/boot/capture.img"),
        step("status", loader, "status"),
    ], crash=True)
    first = build_sid_loader_first_stage(sysroot, dump_to.image, tmp_path / "first.img", script,
                                         {"/boot/vmlinux": kernel.elf}, kernel.elf)
    # The kernel has virtio-mmio only (no PCI): the disk on the board's virtio-mmio bus.
    spec = ForeignVMSpec(kernel.image, first, first_kernel_append("riscv64", "256M"),
                         arch="riscv64",
                         extra_args=("-drive", f"file={disk},format=raw,if=none,id=d0,"
                                     "cache=unsafe", "-device", "virtio-blk-device,drive=d0"))
    run = run_loader_guest(spec, tmp_path, 500)
    console, s = run.console, run.steps
    assert s["load"].rc == 0 and "ENOSYS" not in s["load"].output, s["load"].output
    assert "loaded /boot/vmlinux (as is) with /boot/capture.img" in s["load"].output
    assert "loaded via:   kexec_file_load" in s["status"].output, s["status"].output
    capture = console.split(CRASHING_MARKER, 1)[1]
    assert "capture image by mkkdumprd" in capture
    assert f"found UUID={dump_to.fs_uuid} at /dev/vda" in capture, capture[-4000:]
    dump = check_dump(disk, tmp_path, sysroot, console, crashed_release=kernel.kver)
    assert dump.reader == "riscv64 makedumpfile under qemu-user"
    assert dump.size > 1 << 20
