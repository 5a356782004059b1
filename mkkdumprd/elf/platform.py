"""What glibc's ld.so compiles in per architecture, as data.

The ld.so.cache flags it accepts (sysdeps/*/dl-cache.h), the AT_PLATFORM string that
`$PLATFORM` expands to, the glibc-hwcaps subdirectories it may search, and the `$LIB`
string and default search directories, which depend on how the target's glibc was
configured (Debian multiarch `lib/x86_64-linux-gnu` versus Fedora `lib64`); those are
read from where the target's own ld.so lives, since ld.so sits in its slibdir.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.host import Host

# ld.so.cache entry flags: FLAG_ELF_LIBC6 | the arch's FLAG_*_LIB64 etc.
FLAG_ELF_LIBC6 = 0x0003

# (e_machine, class) -> (cache flags accepted, AT_PLATFORM, multiarch triplet, interpreter)
_ARCHES: dict[tuple[str, int], tuple[frozenset[int], str, str, str]] = {
    ("EM_X86_64", 64): (frozenset({0x0303}), "x86_64", "x86_64-linux-gnu",
                        "/lib64/ld-linux-x86-64.so.2"),
    ("EM_X86_64", 32): (frozenset({0x0803}), "x86_64", "x86_64-linux-gnux32",
                        "/libx32/ld-linux-x32.so.2"),
    ("EM_386", 32): (frozenset({0x0003}), "i686", "i386-linux-gnu", "/lib/ld-linux.so.2"),
    ("EM_AARCH64", 64): (frozenset({0x0A03}), "aarch64", "aarch64-linux-gnu",
                         "/lib/ld-linux-aarch64.so.1"),
    ("EM_ARM", 32): (frozenset({0x0903, 0x0B03, 0x0003}), "v7l", "arm-linux-gnueabihf",
                     "/lib/ld-linux-armhf.so.3"),
    ("EM_PPC64", 64): (frozenset({0x0503}), "power8", "powerpc64le-linux-gnu",
                       "/lib64/ld64.so.2"),
    ("EM_S390", 64): (frozenset({0x0403}), "z13", "s390x-linux-gnu", "/lib/ld64.so.1"),
    ("EM_RISCV", 64): (frozenset({0x1003, 0x0F03}), "riscv64", "riscv64-linux-gnu",
                       "/lib/ld-linux-riscv64-lp64d.so.1"),
    ("EM_LOONGARCH", 64): (frozenset({0x1203, 0x1103}), "loongarch64",
                           "loongarch64-linux-gnu", "/lib64/ld-linux-loongarch-lp64d.so.1"),
}

# glibc-hwcaps subdirectories per arch, best first, with the /proc/cpuinfo flags each needs.
_X86_64_LEVELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
    ("x86-64-v3", frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe",
                             "xsave"})),
    ("x86-64-v2", frozenset({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"})),
)


_GLIBC_VERSION = re.compile(rb"release version (\d+)\.(\d+)")
# glibc 2.26-2.36 on Intel CPUs replaces AT_PLATFORM (sysdeps/x86/cpu-features.c).
_HASWELL = frozenset({"avx2", "fma", "bmi1", "bmi2", "abm", "movbe", "popcnt"})
_AVX512_1 = frozenset({"avx512bw", "avx512dq", "avx512vl"})


@dataclass(frozen=True)
class LdsoPlatform:
    """The ELF flavour the loader accepts and the strings its DSTs expand to."""

    machine: str
    elf_class: int
    cache_flags: frozenset[int]
    platform: str
    lib: str  # what $LIB expands to, without leading slash
    default_dirs: tuple[PurePosixPath, ...]
    hwcaps: tuple[str, ...]  # supported glibc-hwcaps subdirs, best first
    legacy_subdirs: tuple[str, ...] = ()  # tls/, $PLATFORM/ ... (glibc before 2.37)


def ldso_platform(view: Host, machine: str, elf_class: int,
                  interp: str | None = None) -> LdsoPlatform:
    known = _ARCHES.get((machine, elf_class))
    flags, platform, triplet, default_interp = known or (
        frozenset({FLAG_ELF_LIBC6}), "", "", "")
    lib = _slibdir(view, interp or default_interp, triplet, elf_class)
    dirs = [f"/{lib}", f"/usr/{lib}"]
    if "/" in lib:  # Debian multiarch glibc also searches the plain dirs
        dirs += ["/lib", "/usr/lib"]
    version = _glibc_version(view, interp or default_interp)
    cpu = _cpu(view)
    hwcaps = _hwcaps(machine, elf_class, cpu) if version is None or version >= (2, 33) else ()
    legacy: tuple[str, ...] = ()
    if version is not None and version < (2, 37):
        # Legacy hwcap subdirectories, searched after glibc-hwcaps/ until 2.37:
        # every combination of the important AT_HWCAP names, the platform and "tls".
        names: list[str] = []
        if machine == "EM_X86_64" and elf_class == 64:
            platform, names = _x86_64_legacy(cpu)
        legacy = power_set([*names, platform, "tls"] if platform else [*names, "tls"])
    return LdsoPlatform(machine, elf_class, flags, platform, lib,
                  tuple(PurePosixPath(d) for d in dirs), hwcaps, legacy)


def power_set(components: list[str]) -> tuple[str, ...]:
    """_dl_important_hwcaps' order: subsets by descending bit mask, the last component
    first in each path; the empty subset (the directory itself) is left out."""
    n = len(components)
    out: list[str] = []
    for mask in range((1 << n) - 1, 0, -1):
        out.append("/".join(components[i] for i in reversed(range(n)) if mask >> i & 1))
    return tuple(out)


def _x86_64_legacy(cpu: _Cpu | None) -> tuple[str, list[str]]:
    """(dl_platform, important AT_HWCAP names) as glibc 2.26-2.36 computes them."""
    platform, names = "x86_64", ["x86_64"]
    if cpu is None or cpu.vendor != "GenuineIntel":
        return platform, names
    if "avx512cd" in cpu.flags:
        if "avx512er" in cpu.flags:
            if "avx512pf" in cpu.flags:
                platform = "xeon_phi"
        elif cpu.flags >= _AVX512_1:
            names.append("avx512_1")
    if platform == "x86_64" and cpu.flags >= _HASWELL:
        platform = "haswell"
    return platform, names


@dataclass(frozen=True)
class _Cpu:
    """The live machine's CPU vendor and flags (/proc/cpuinfo)."""

    vendor: str
    flags: frozenset[str]


def _cpu(view: Host) -> _Cpu | None:
    """The CPU the view runs on: only known for the live machine (/proc/cpuinfo)."""
    text = view.read_optional("/proc/cpuinfo")
    if not text:
        return None
    vendor, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags":
            flags = frozenset(value.split())
            break
    return _Cpu(vendor, flags)


def _glibc_version(view: Host, interp: str) -> tuple[int, int] | None:
    """The target glibc's version, from the banner compiled into its ld.so."""
    if not interp or not view.is_file(interp):
        return None
    try:
        m = _GLIBC_VERSION.search(view.read_bytes(interp))
    except OSError:
        return None
    return (int(m.group(1)), int(m.group(2))) if m else None


def _slibdir(view: Host, interp: str, triplet: str, elf_class: int) -> str:
    """$LIB: the directory ld.so was installed in, relative to / or /usr."""
    if interp and view.is_file(interp):
        parent = view.resolve(interp).parent
        rel = str(parent).lstrip("/")
        if rel.startswith("usr/"):
            rel = rel[4:]
        if rel.startswith("lib"):
            return rel
    if triplet and view.is_dir(f"/usr/lib/{triplet}"):
        return f"lib/{triplet}"
    return "lib64" if elf_class == 64 and view.is_dir("/usr/lib64") else "lib"


def _hwcaps(machine: str, elf_class: int, cpu: _Cpu | None) -> tuple[str, ...]:
    """Supported glibc-hwcaps levels, best first."""
    if machine != "EM_X86_64" or elf_class != 64 or cpu is None:
        return ()
    out: list[str] = []
    # A level counts only when every lower level is there too.
    for name, need in reversed(_X86_64_LEVELS):
        if not need <= cpu.flags:
            break
        out.insert(0, name)
    return tuple(out)
