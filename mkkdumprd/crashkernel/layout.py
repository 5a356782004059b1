"""How the reservation is laid out: one plain size, `,high` + `,low`, or a fixed part + `,cma`.

The estimate (recommend.py) says how much memory the capture kernel needs in all. This
module decides where that memory comes from, for the target kernel (its config file) and
the machine:

  fixed + ,cma  the kernel has CMA crashkernel support (kernel/crash_reserve.c
                CRASHKERNEL_CMA: CONFIG_CMA with the generic reservation, and the arch
                calling reserve_crashkernel_cma(): x86_64 from 6.17) and the dump may lose
                user pages (the collector drops them, -d with bit 8). Only what kexec
                places in the reservation is fixed: the kernel's PAGE_ALIGN(init_size)
                window, the compressed initramfs, the ELF core headers and purgatory/boot
                params; everything the capture kernel allocates at run time comes from
                the CMA area, which the running system keeps using for movable pages.
  ,high + ,low  the arch has the generic reservation and most RAM lies above LOW_MAX
                (4 GiB on x86_64), or the plain size would take more than an eighth of the
                RAM below it: the bulk goes high and only the capture kernel's swiotlb
                (64 MiB + 8 MiB on x86_64, SUSE calibrate's MinLow) or the arch's default
                ,low stays low.
  plain         everything else.

Hardware terms the estimate lacks are added here (`hardware_terms`), each with its source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.arch import ArchInfo
from mkkdumprd.crashkernel.size import KiB, MiB, format_size, round_up
from mkkdumprd.host import Host
from mkkdumprd.human_size import human_size as human

# swiotlb's default (IO_TLB_DEFAULT_SIZE) + 8 MiB: openSUSE kdumptool calibrate.cc MinLow.
X86_LOW = 72 * MiB
# Purgatory, boot_params, the command line and setup_data (EFI map, RNG seed), 16-byte
# aligned, plus the kernel's 2 MiB kernel_alignment inside the reservation
# (arch/x86/kernel/kexec-bzimage64.c; reference wave2-facts.md section 4).
PLACEMENT_SLACK = 3 * MiB
FIXED_ROUND = 2 * MiB
CMA_ROUND = 16 * MiB
ELF_PHDR = 56
ELFCOREHDR_FALLBACK = 1 * MiB
# Bit 8 of makedumpfile's dump level excludes user process data pages: the pages the CMA
# area lends to the running system are exactly those (and movable page cache, bits 2/4).
USER_PAGES_BIT = 8
SOURCE_CONFIG_NAMES = ("/boot/config-{kver}", "/usr/lib/modules/{kver}/config",
                       "/lib/modules/{kver}/config")


@dataclass(frozen=True)
class KernelConfig:
    """The target kernel's build options that matter here (None: no config file found)."""
    path: str | None
    options: dict[str, str]
    version: tuple[int, int] | None

    def on(self, name: str) -> bool:
        return self.options.get(name) == "y"


def _version(kver: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", kver)
    return (int(m.group(1)), int(m.group(2))) if m else None


def read_kernel_config(host: Host, kver: str | None) -> KernelConfig:
    """CONFIG_* of kernel `kver`: /boot/config-KVER, else the modules directory's copy
    (Debian's kernels since 7.2, Fedora's)."""
    if kver:
        for pattern in SOURCE_CONFIG_NAMES:
            p = pattern.format(kver=kver)
            text = host.read_optional(p)
            if text is not None:
                opts = {}
                for line in text.splitlines():
                    if line.startswith("CONFIG_") and "=" in line:
                        k, _, v = line.partition("=")
                        opts[k[len("CONFIG_"):]] = v.strip().strip('"')
                return KernelConfig(p, opts, _version(kver))
    return KernelConfig(None, {}, _version(kver) if kver else None)


def kver_of(kernel: PurePosixPath) -> str | None:
    """KVER from /boot/vmlinuz-KVER or /usr/lib/modules/KVER/vmlinuz."""
    if kernel.name == "vmlinuz" and kernel.parent.parent.name == "modules":
        return kernel.parent.name
    for prefix in ("vmlinuz-", "vmlinux-", "Image-", "bzImage-"):
        if kernel.name.startswith(prefix):
            return kernel.name[len(prefix):]
    return None


def cma_support(arch: ArchInfo, cfg: KernelConfig) -> tuple[bool, str]:
    """(the kernel reserves crashkernel=,cma, why or why not)."""
    if not arch.cma:
        return False, f"{arch.name} kernels do not read crashkernel=,cma"
    if cfg.path is None:
        return False, "no config file for the target kernel (pass --kver or install it)"
    if not (cfg.on("CMA") and cfg.on("CRASH_RESERVE")):
        return False, f"{cfg.path} lacks CONFIG_CMA=y or CONFIG_CRASH_RESERVE=y"
    # x86_64: J. Bohac's commits 35c18f2933c5 (",cma" suffix) and ab475510e042
    # (reserve_crashkernel_cma) are dated 2025-07-19, after the 6.16 merge window closed:
    # Linux 6.17. The arm64 and riscv patches (J. Ruan, "kexec_file: Add support for
    # crashkernel CMA reservation", committed 2026-06-30) have no confirmed release yet,
    # so those arches are not offered CMA.
    if arch.name != "x86_64":
        return False, f"crashkernel=,cma on {arch.name}: release unconfirmed; not used"
    if cfg.version is None or cfg.version < (6, 17):
        return False, "crashkernel=,cma needs Linux 6.17 or later"
    return True, f"{cfg.path}: CONFIG_CMA=y, Linux {cfg.version[0]}.{cfg.version[1]}"


def dump_level(collector: Sequence[str]) -> int | None:
    """makedumpfile's -d level in `collector` (None: not makedumpfile, or no -d: keeps all)."""
    if not collector or PurePosixPath(collector[0]).name != "makedumpfile":
        return None
    args = list(collector[1:])
    for i, a in enumerate(args):
        value = None
        if a == "-d" and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith("-d") and a[2:].isdigit():
            value = a[2:]
        elif a.startswith("--dump-level="):
            value = a.split("=", 1)[1]
        if value is not None:
            try:
                return int(value.split(",")[0])
            except ValueError:
                return None
    return 0


def keeps_user_pages(collector: Sequence[str]) -> bool:
    """The collector writes user pages: cp/dd/anything not makedumpfile, or a -d level
    without bit 8 (crashkernel=,cma's area would then be missing from a dump that
    promises them)."""
    level = dump_level(collector)
    return level is None or not level & USER_PAGES_BIT


@dataclass(frozen=True)
class HwTerm:
    name: str
    size: int
    source: str


def hardware_terms(arch: ArchInfo, host: Host, cfg: KernelConfig) -> list[HwTerm]:
    """Memory Fedora's kdump-utils adds for hardware (kdump-lib.sh kdump_get_arch_recommend_
    crashkernel, reference fedora-kdump-utils.md "crashkernel defaults")."""
    out: list[HwTerm] = []
    cpuinfo = host.read_optional("/proc/cpuinfo") or ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags |= set(line.partition(":")[2].split())
    if arch.name == "x86_64" and cfg.on("AMD_MEM_ENCRYPT"):
        # kdump-utils greps dmesg for "Memory Encryption Features active: AMD SME|SEV";
        # the same facts from files: SME is on when the CPU has it and mem_encrypt=on (or
        # the kernel's default is on and not turned off); SEV when a guest has the flag.
        cmdline = (host.read_optional("/proc/cmdline") or "").split()
        sme = "sme" in flags and ("mem_encrypt=on" in cmdline or (
            cfg.on("AMD_MEM_ENCRYPT_ACTIVE_BY_DEFAULT") and "mem_encrypt=off" not in cmdline))
        sev = "hypervisor" in flags and bool(flags & {"sev", "sev_es", "sev_snp"})
        if sme or sev:
            out.append(HwTerm("sme/sev", 64 * MiB,
                              f"AMD {'SME' if sme else 'SEV'} memory encryption is active: "
                              "kdump-utils adds 64M (4841bc6)"))
    if arch.name == "aarch64":
        k64 = cfg.on("ARM64_64K_PAGES")
        if k64:
            out.append(HwTerm("64k-pages", 100 * MiB,
                              "64K-page arm64 kernel: kdump-utils adds 100M (05c4861)"))
            if any(n.startswith("arm-smmu") for n in host.listdir("/sys/devices/platform")):
                out.append(HwTerm("arm-smmu", 384 * MiB,
                                  "ARM SMMU with 64K pages: kdump-utils adds 384M"))
        if host.is_dir("/sys/bus/pci/drivers/mlx5_core"):
            out.append(HwTerm("mlx5", (200 if k64 else 150) * MiB,
                              f"mlx5 network card: kdump-utils adds {200 if k64 else 150}M "
                              "on aarch64"))
    return out


def elfcorehdr_size(arch: ArchInfo, cfg: KernelConfig) -> int:
    """The ELF core headers kexec_file_load puts in the reservation: with CRASH_HOTPLUG on
    x86 (2 + NR_CPUS + CRASH_MAX_MEMORY_RANGES) program headers of 56 B
    (arch/x86/kernel/crash.c arch_crash_get_elfcorehdr_size), else a page per range."""
    if arch.name == "x86_64" and cfg.on("CRASH_HOTPLUG"):
        try:
            cpus = int(cfg.options.get("NR_CPUS", "0"))
            ranges = int(cfg.options.get("CRASH_MAX_MEMORY_RANGES", "0")) \
                if cfg.on("MEMORY_HOTPLUG") else 0
        except ValueError:
            return ELFCOREHDR_FALLBACK
        if cpus:
            return round_up((2 + cpus + ranges) * ELF_PHDR, 4 * KiB)
    return ELFCOREHDR_FALLBACK


def low_ram(host: Host, low_max: int) -> int | None:
    """Top-level System RAM below `low_max` in /proc/iomem (None when not readable)."""
    text = host.read_optional("/proc/iomem") or ""
    total, seen = 0, False
    for line in text.splitlines():
        m = re.match(r"^([0-9a-fA-F]+)-([0-9a-fA-F]+) : System RAM$", line)
        if m:
            a, b = int(m.group(1), 16), int(m.group(2), 16)
            if a or b:
                seen = True
                if a < low_max:
                    total += min(b + 1, low_max) - a
    return total if seen else None


@dataclass(frozen=True)
class Layout:
    words: tuple[str, ...]      # crashkernel= values, in apply's order
    fixed: int                  # bytes the running system loses (plain, or ,high)
    cma: int                    # bytes of the ,cma area (0: none)
    low: int                    # bytes of ,low (0: none)
    kind: str                   # "plain", "high", "cma", "high+cma"
    choice: str                 # why this layout, one line

    @property
    def cmdline(self) -> str:
        return " ".join(f"crashkernel={v}" for v in self.words)


def choose(arch: ArchInfo, total: int, rounded: int, fixed_need: int, ram: int,
           ram_below: int | None, use_cma: bool, cma_why: str,
           high_ok: bool = True) -> Layout:
    """The layout for an estimate of `total` bytes (`rounded` to the reservation step)
    whose part kexec places in the reservation is `fixed_need` bytes."""
    main = rounded
    cma = 0
    why: list[str] = []
    if use_cma:
        main = round_up(fixed_need + PLACEMENT_SLACK, FIXED_ROUND)
        cma = round_up(max(total - main, 0), CMA_ROUND)
        why.append(f"CMA: {cma_why}; the capture kernel's working memory is lent to the "
                   "running system until a crash (user pages are not dumped)")
    else:
        why.append(f"no CMA: {cma_why}")
    high = False
    if arch.high_low and arch.low_max and high_ok and ram > arch.low_max:
        # Unknown (--mem without /proc/iomem): firmware leaves the 32-bit PCI hole below
        # LOW_MAX, at least a quarter of it on PCs (QEMU pc: 3 GiB of RAM below, q35: 2).
        below = ram_below if ram_below is not None else min(ram, arch.low_max * 3 // 4)
        above = ram - below
        if above >= below:
            high = True
            why.append(f"high: {human(above)} of {human(ram)} RAM lies above "
                       f"{human(arch.low_max)}, the low region is the scarce one")
        elif main > below // 8:
            high = True
            why.append(f"high: {format_size(main)} would take over an eighth of the "
                       f"{human(below)} below {human(arch.low_max)}")
    low = 0
    words: list[str] = []
    if high:
        low = X86_LOW if arch.name == "x86_64" else arch.default_low
        words += [f"{format_size(main)},high", f"{format_size(low)},low"]
    else:
        words.append(format_size(main))
    if cma:
        words.append(f"{format_size(cma)},cma")
    kind = ("high" if high else "plain") if not cma else ("high+cma" if high else "cma")
    kind_line = ("plain: " if kind == "plain" else "") + "; ".join(why)
    return Layout(tuple(words), main, cma, low, kind, kind_line)

