"""Small test kernels WITH kexec_file_load, built from Debian's linux-source-6.1 (or 7.x).

Debian's kernels off x86 have no CONFIG_KEXEC_FILE (multiarch-kdump.md §0), so the
loader's kexec_file_load path can only run there on a kernel we build: allnoconfig plus the
fragment below (reference §6), cross-compiled. `custom_kernel("aarch64")` builds once
(about 2-5 minutes on 2 vCPUs) and caches the result in
$MKKDUMPRD_TEST_CACHE/custom-kernel-<arch>; `python -m tests.support.custom_kernel ARCH`
does the same from a shell. Needs the host packages linux-source-6.1, flex, bison, bc, patch
and the cross compiler (gcc-aarch64-linux-gnu ...): dev/setup-kernels installs them. An
arch's `patches` (files in kernel-patches/, part of the cache key) are applied to its
source tree first: riscv64 needs one backport for makedumpfile to read its vmcores.

`custom_kernel("x86_64-crypt")` is a native x86_64 kernel with CONFIG_CRASH_DM_CRYPT (LUKS
volume keys handed to the capture kernel, Linux >= 6.16): its spec names `source="sid"`,
Debian unstable's linux-source .deb fetched with `apt-get download` through the private
sid apt state of tests/support/foreign_sysroot.py into the cache (never installed). It
needs flex, bison, bc and libelf-dev (objtool) on the host. Builds run under `nice -n 19`.
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
NICE = ["nice", "-n", "19"]     # a kernel build must not slow a test run beside it
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
    # LUKS proof (issue #16): CRASH_DM_CRYPT needs KEXEC_FILE, CRASH_DUMP, DM_CRYPT, KEYS
    # and CONFIGFS_FS; aes-xts-plain64 + sha256 for the LUKS2 volume, AF_ALG (NET) for
    # cryptsetup's keyslot crypto. The same kernel is the capture kernel: everything built
    # in, MODULES on only for a kmoddir (modules.builtin, and config beside it as Debian's
    # 7.x packages keep it) that `mkkdumprd build --kmoddir` reads.
    "x86_64-crypt": dict(
        karch="x86", cross="", target="bzImage", image="arch/x86/boot/bzImage",
        source="sid", kmoddir="1",
        fragment="""
CONFIG_MODULES=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_PCI=y
CONFIG_ACPI=y
CONFIG_BLOCK=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
CONFIG_EXT4_FS=y
CONFIG_MD=y
CONFIG_BLK_DEV_DM=y
CONFIG_DM_CRYPT=y
CONFIG_KEYS=y
CONFIG_CONFIGFS_FS=y
CONFIG_CRASH_DM_CRYPT=y
CONFIG_FILE_LOCKING=y
CONFIG_NET=y
CONFIG_UNIX=y
CONFIG_CRYPTO=y
CONFIG_CRYPTO_SHA256=y
CONFIG_CRYPTO_AES=y
CONFIG_CRYPTO_XTS=y
CONFIG_CRYPTO_ECB=y
CONFIG_CRYPTO_CBC=y
CONFIG_CRYPTO_USER_API_HASH=y
CONFIG_CRYPTO_USER_API_SKCIPHER=y
"""),
}


@dataclass(frozen=True)
class CustomKernel:
    arch: str
    image: Path          # what QEMU -kernel boots
    config: Path
    kmoddir: Path | None = None   # lib/modules/KVER from modules_install, when built
    elf: Path | None = None       # stripped ELF vmlinux, where kexec_file_load wants one

    release: str = "6.1.192"      # `make kernelrelease` of the tree (6.1 unless said)

    @property
    def kver(self) -> str:
        return self.kmoddir.name if self.kmoddir else self.release

    @property
    def vmlinuz(self) -> Path:     # as tests.support.debian_kernel.Kernel names it
        return self.image


def _key(arch: str) -> str:
    spec = ARCHES[arch]
    h = hashlib.sha256((COMMON + str(spec)).encode())
    for name in spec.get("patches", "").split():
        h.update((PATCHES / name).read_bytes())
    h.update(str(_source(spec).stat().st_size).encode())
    return h.hexdigest()[:12]


def _source(spec: dict[str, str]) -> Path:
    """The linux-source tarball a spec builds from: the host's 6.1 package unless the spec
    says `source="sid"` (Debian unstable's, downloaded into the cache, never installed)."""
    if spec.get("source") != "sid":
        return SOURCE
    return sid_linux_source()


def sid_linux_source() -> Path:
    """/usr/src/linux-source-X.Y.tar.xz out of sid's linux-source-X.Y .deb, in the cache."""
    from tests.support.foreign_sysroot import _SID, _Apt

    base = CACHE / "linux-source-sid"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(base.glob("usr/src/linux-source-*.tar.xz"))
        if found:
            return found[-1]
        apt = _Apt(CACHE / "apt-sid-amd64", "amd64", _SID)
        lists = CACHE / "apt-sid-amd64" / "lists"
        if not any(lists.glob("*Packages*")):
            apt.update()
        pkg = ""
        for line in apt.run("apt-cache", "depends", "linux-source").splitlines():
            if line.strip().startswith("Depends: linux-source-"):
                pkg = line.split()[-1]
        if not pkg:
            raise RuntimeError("sid's linux-source names no linux-source-X.Y package")
        cached = sorted((CACHE / "apt-sid-amd64" / "debs").glob(f"{pkg}_*.deb"))
        deb = cached[-1] if cached else apt.download(pkg)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(base)], check=True)
        found = sorted(base.glob("usr/src/linux-source-*.tar.xz"))
        if not found:
            raise RuntimeError(f"{deb} holds no usr/src/linux-source-*.tar.xz")
        return found[-1]


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
        release = base / f"release-{key}"
        return CustomKernel(arch, done, base / f"config-{key}", mods[0] if mods else None,
                            elf if elf.exists() else None,
                            release.read_text().strip() if release.exists() else "6.1.192")


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} not found: install {package} (dev/setup-kernels)")
    return path


def _build(arch: str, spec: dict[str, str], base: Path, done: Path) -> None:
    source = _source(spec)
    if not source.exists():
        raise RuntimeError(f"{source} missing: install linux-source-6.1 (dev/setup-kernels)")
    _need(spec["cross"] + "gcc", f"gcc-{spec['cross'].rstrip('-')}" if spec["cross"] else "gcc")
    for tool, pkg in (("flex", "flex"), ("bison", "bison"), ("bc", "bc")):
        _need(tool, pkg)
    src = base / "src"
    if not (src / "Makefile").exists():
        shutil.rmtree(src, ignore_errors=True)
        with tarfile.open(source) as t:
            # (the filter argument needs Python 3.11.4; Debian 12's python3.11 is 3.11.2)
            t.extractall(base, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
        (base / source.name.removesuffix(".tar.xz")).rename(src)
    for name in spec.get("patches", "").split():
        patch = str(PATCHES / name)
        applied = subprocess.run(["patch", "-p1", "-R", "--dry-run", "-s", "-f", "-i", patch],
                                 cwd=src, capture_output=True).returncode == 0
        if not applied:
            subprocess.run(["patch", "-p1", "-s", "-i", patch], cwd=src, check=True)
    out = base / "out"
    env = {**os.environ, "ARCH": spec["karch"], "CROSS_COMPILE": spec["cross"]}
    jobs = "-j2" if spec.get("source") == "sid" else f"-j{os.cpu_count() or 2}"
    frag = base / "fragment.config"
    common = [line for line in COMMON.splitlines() if line not in spec.get("drop", "").split()]
    frag.write_text("\n".join(common) + spec["fragment"])

    def make(*args: str) -> None:
        subprocess.run([*NICE, "make", "-C", str(src), f"O={out}", *args], env=env,
                       check=True, stdout=subprocess.DEVNULL)

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
    make(jobs, *spec["target"].split())
    key = done.name.split("-", 1)[1]
    if spec.get("elf"):
        strip = _need(spec["cross"] + "strip", f"binutils-{spec['cross'].rstrip('-')}")
        subprocess.run([strip, "-o", str(base / f"vmlinux-{key}"), str(out / spec["elf"])],
                       check=True)
    if spec.get("kmoddir"):
        make(jobs, "modules")
        make(f"INSTALL_MOD_PATH={base / f'modroot-{key}'}", "modules_install")
        for kdir in (base / f"modroot-{key}" / "lib" / "modules").glob("*"):
            shutil.copy2(out / ".config", kdir / "config")
    release = subprocess.run(["make", "-s", "-C", str(src), f"O={out}", "kernelrelease"],
                             env=env, check=True, capture_output=True, text=True).stdout
    (base / f"release-{key}").write_text(release.strip() + "\n")
    shutil.copy2(out / ".config", base / f"config-{key}")
    shutil.copy2(out / spec["image"], done)


if __name__ == "__main__":
    k = custom_kernel(sys.argv[1] if len(sys.argv) > 1 else "aarch64")
    print(k.image)
