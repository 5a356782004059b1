"""Small test kernels WITH kexec_file_load, built from Debian's linux-source-6.1.

Debian's kernels off x86 have no CONFIG_KEXEC_FILE (multiarch-kdump.md §0), so the
loader's kexec_file_load path can only run there on a kernel we build: allnoconfig plus the
fragment below (reference §6), cross-compiled. `custom_kernel("aarch64")` builds once
(about 2-5 minutes on 2 vCPUs) and caches the result in
$MKKDUMPRD_TEST_CACHE/custom-kernel-<arch>; `python -m tests.support.custom_kernel ARCH`
does the same from a shell. Needs the host packages linux-source-6.1, flex, bison, bc, patch
and the cross compiler (gcc-aarch64-linux-gnu ...): dev/setup-kernels installs them. An
arch's `patches` (files in kernel-patches/, part of the cache key) are applied to its
source tree first: riscv64 needs one backport for makedumpfile to read its vmcores.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian_kernel import CACHE

SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
PATCHES = Path(__file__).with_name("kernel-patches")

COMMON = """
CONFIG_64BIT=y
CONFIG_SMP=y
CONFIG_NR_CPUS=4
CONFIG_PRINTK=y
CONFIG_TTY=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_RD_ZSTD=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_DEVTMPFS=y
CONFIG_TMPFS=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_MAGIC_SYSRQ=y
CONFIG_KEXEC_FILE=y
CONFIG_CRASH_DUMP=y
CONFIG_PROC_VMCORE=y
CONFIG_PROC_KCORE=y
CONFIG_KALLSYMS=y
CONFIG_RELOCATABLE=y
CONFIG_FUTEX=y
CONFIG_MULTIUSER=y
CONFIG_EPOLL=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EVENTFD=y
CONFIG_SHMEM=y
CONFIG_MEMFD_CREATE=y
CONFIG_PANIC_TIMEOUT=10
CONFIG_NAMESPACES=y
CONFIG_POSIX_TIMERS=y
CONFIG_PRINTK_TIME=y
# CONFIG_MODULES is not set
"""

ARCHES = {
    "aarch64": dict(
        karch="arm64", cross="aarch64-linux-gnu-", target="Image",
        image="arch/arm64/boot/Image",
        fragment="""
CONFIG_SERIAL_AMBA_PL011=y
CONFIG_SERIAL_AMBA_PL011_CONSOLE=y
CONFIG_ARM64_VA_BITS_48=y
# CONFIG_RANDOMIZE_BASE is not set
"""),
    # Without PPC_OF_BOOT_TRAMPOLINE SLOF stops with a Program Exception; without
    # ALTIVEC/VSX Debian's userland dies of illegal instructions (reference §6).
    "ppc64le": dict(
        karch="powerpc", cross="powerpc64le-linux-gnu-", target="vmlinux",
        image="vmlinux",
        fragment="""
CONFIG_PPC64=y
CONFIG_PPC_BOOK3S_64=y
CONFIG_CPU_LITTLE_ENDIAN=y
CONFIG_PPC_PSERIES=y
CONFIG_HVC_CONSOLE=y
CONFIG_CRYPTO=y
CONFIG_CRYPTO_SHA256=y
CONFIG_PPC_RADIX_MMU=y
CONFIG_PPC_OF_BOOT_TRAMPOLINE=y
CONFIG_ALTIVEC=y
CONFIG_VSX=y
CONFIG_PPC_FPU=y
"""),
    # Debian's s390x kernels cannot dump at all (no CRASH_DUMP in bookworm, no KEXEC in
    # trixie), so this kernel is the capture kernel too: MODULES on with the disk path
    # built in, and modules_install gives the capture build a kmoddir (modules.builtin).
    "s390x": dict(
        karch="s390", cross="s390x-linux-gnu-", target="bzImage",
        image="arch/s390/boot/bzImage", kmoddir="1",
        fragment="""
CONFIG_MODULES=y
CONFIG_SCLP_TTY=y
CONFIG_SCLP_CONSOLE=y
CONFIG_SCLP_VT220_TTY=y
CONFIG_SCLP_VT220_CONSOLE=y
CONFIG_CRYPTO=y
CONFIG_CRYPTO_SHA256=y
CONFIG_CRYPTO_SHA256_S390=y
# CONFIG_PCI is not set
CONFIG_S390_GUEST=y
CONFIG_BLOCK=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_BLK=y
CONFIG_EXT4_FS=y
"""),
    # allnoconfig turns MMU and FPU off; KEXEC_FILE needs MMU and Debian's userland is
    # double-float. riscv 6.1's kexec_file_load takes only an ELF vmlinux, so the build keeps
    # a stripped one beside the Image that QEMU boots; the kernel is its own capture kernel
    # (Debian's riscv64 kernels have no KEXEC_FILE), virtio-mmio disk and ext4 built in.
    "riscv64": dict(
        karch="riscv", cross="riscv64-linux-gnu-", target="Image vmlinux",
        image="arch/riscv/boot/Image", elf="vmlinux", kmoddir="1",
        drop="CONFIG_RELOCATABLE=y",   # riscv has it from 6.5 on
        # riscv 6.1 puts no VA_BITS/PAGE_OFFSET/... in VMCOREINFO: makedumpfile fails.
        patches="riscv64-crash-vmcoreinfo.patch",
        fragment="""
CONFIG_MODULES=y
CONFIG_MMU=y
CONFIG_ARCH_RV64I=y
CONFIG_FPU=y
CONFIG_RISCV_ISA_C=y
CONFIG_SOC_VIRT=y
CONFIG_RISCV_SBI=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_SERIAL_OF_PLATFORM=y
CONFIG_POWER_RESET=y
CONFIG_POWER_RESET_SYSCON=y
CONFIG_POWER_RESET_SYSCON_POWEROFF=y
CONFIG_CRYPTO=y
CONFIG_CRYPTO_SHA256=y
CONFIG_BLOCK=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO_MMIO=y
CONFIG_VIRTIO_BLK=y
CONFIG_EXT4_FS=y
"""),
}


@dataclass(frozen=True)
class CustomKernel:
    arch: str
    image: Path          # what QEMU -kernel boots
    config: Path
    kmoddir: Path | None = None   # lib/modules/KVER from modules_install, when built
    elf: Path | None = None       # stripped ELF vmlinux, where kexec_file_load wants one

    @property
    def kver(self) -> str:
        return self.kmoddir.name if self.kmoddir else "6.1.192"


def _key(arch: str) -> str:
    spec = ARCHES[arch]
    h = hashlib.sha256((COMMON + str(spec)).encode())
    for name in spec.get("patches", "").split():
        h.update((PATCHES / name).read_bytes())
    h.update(str(SOURCE.stat().st_size).encode())
    return h.hexdigest()[:12]


def custom_kernel(arch: str) -> CustomKernel:
    spec = ARCHES[arch]
    base = CACHE / f"custom-kernel-{arch}"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = _key(arch)
        done = base / f"Image-{key}"
        if not done.exists():
            _build(arch, spec, base, done)
        mods = sorted((base / f"modroot-{key}" / "lib" / "modules").glob("*"))
        elf = base / f"vmlinux-{key}"
        return CustomKernel(arch, done, base / f"config-{key}", mods[0] if mods else None,
                            elf if elf.exists() else None)


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} not found: install {package} (dev/setup-kernels)")
    return path


def _build(arch: str, spec: dict[str, str], base: Path, done: Path) -> None:
    if not SOURCE.exists():
        raise RuntimeError(f"{SOURCE} missing: install linux-source-6.1 (dev/setup-kernels)")
    _need(spec["cross"] + "gcc", f"gcc-{spec['cross'].rstrip('-')}")
    for tool, pkg in (("flex", "flex"), ("bison", "bison"), ("bc", "bc")):
        _need(tool, pkg)
    src = base / "src"
    if not (src / "Makefile").exists():
        shutil.rmtree(src, ignore_errors=True)
        with tarfile.open(SOURCE) as t:
            t.extractall(base, filter="tar")
        (base / "linux-source-6.1").rename(src)
    for name in spec.get("patches", "").split():
        patch = str(PATCHES / name)
        applied = subprocess.run(["patch", "-p1", "-R", "--dry-run", "-s", "-f", "-i", patch],
                                 cwd=src, capture_output=True).returncode == 0
        if not applied:
            subprocess.run(["patch", "-p1", "-s", "-i", patch], cwd=src, check=True)
    out = base / "out"
    env = {**os.environ, "ARCH": spec["karch"], "CROSS_COMPILE": spec["cross"]}
    frag = base / "fragment.config"
    common = [line for line in COMMON.splitlines() if line not in spec.get("drop", "").split()]
    frag.write_text("\n".join(common) + spec["fragment"])

    def make(*args: str) -> None:
        subprocess.run(["make", "-C", str(src), f"O={out}", *args], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    make("allnoconfig")
    subprocess.run([str(src / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out),
                    str(out / ".config"), str(frag)], env=env, check=True, cwd=src,
                   stdout=subprocess.DEVNULL)
    make("olddefconfig")
    config = set((out / ".config").read_text().splitlines())
    # An option whose dependencies are off is dropped silently by olddefconfig.
    for want in frag.read_text().splitlines():
        if want.endswith("=y") and want not in config:
            raise RuntimeError(f"{want} did not survive olddefconfig for {arch}; add the "
                               "options it depends on to the fragment")
    make(f"-j{os.cpu_count() or 2}", *spec["target"].split())
    key = done.name.split("-", 1)[1]
    if spec.get("elf"):
        strip = _need(spec["cross"] + "strip", f"binutils-{spec['cross'].rstrip('-')}")
        subprocess.run([strip, "-o", str(base / f"vmlinux-{key}"), str(out / spec["elf"])],
                       check=True)
    if spec.get("kmoddir"):
        make(f"-j{os.cpu_count() or 2}", "modules")
        make(f"INSTALL_MOD_PATH={base / f'modroot-{key}'}", "modules_install")
    shutil.copy2(out / ".config", base / f"config-{key}")
    shutil.copy2(out / spec["image"], done)


if __name__ == "__main__":
    k = custom_kernel(sys.argv[1] if len(sys.argv) > 1 else "aarch64")
    print(k.image)
