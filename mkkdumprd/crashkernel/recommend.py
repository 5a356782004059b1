"""How much memory the capture kernel needs: the arch table, and an estimate from real files.

The estimate is one pure function (`estimate`) over measured inputs (`EstimateInputs`).
Its terms, all in bytes, are what is resident in the reservation at the worst moment,
which is while the initramfs is being unpacked and then while makedumpfile runs:

  kernel       the capture kernel in memory: bzImage init_size (the kexec segment the
               kernel decompresses itself in), arm64/riscv Image image_size, or the sum of
               ELF PT_LOAD p_memsz; the arch's fallback when no kernel file is known.
  dynamic      the kernel's own allocations no file shows (slab, page tables, vmalloc,
               log buffer, vmcore ELF headers); per arch, arch/<arch>.toml [estimate].
  memmap       struct page (64 B) for every page of the reservation itself.
  compressed   the capture image as loaded: it stays until unpacking ends.
  unpacked     the rootfs it unpacks to: every file rounded up to whole pages (page cache),
               plus 1 KiB of inode and dentry per entry.
  modules      kernel modules loaded from the image: the .ko sizes again (the code and
               data now live in vmalloc space too); compressed .ko count 3x.
  percpu       per CPU the capture kernel brings up (nr_cpus= / maxcpus= of its cmdline,
               or on x86_64 the CPUs online, which the loader gives it: capture_cpus):
               per-cpu areas, two thread stacks and makedumpfile's per-thread buffers.
  collector    makedumpfile and the shell: 12 MiB of process memory (binary, libraries,
               heap, busybox), plus its cyclic bitmaps, 2 bits per page of the crashed RAM,
               capped at 32 MiB (makedumpfile cycles beyond that), plus 96 B per 128 MiB.
  luks         Argon2 memory of the LUKS keyslot to open (--luks-memory), when the dump
               target is encrypted.
  crypt        an image that opens LUKS volumes (it carries cryptsetup): 8 MiB for
               cryptsetup and its libraries, dm-crypt's per-CPU buffers and the handed-over
               keys. The volume key comes from the first kernel (CONFIG_CRASH_DM_CRYPT), so
               no Argon2 runs in the capture kernel.

margin: 20 % of everything but the LUKS term, plus 16 MiB (page-cache of the dump being
written, fragmentation, drivers probing). The result is rounded up to 16 MiB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mkkdumprd.arch import ArchInfo
from mkkdumprd.crashkernel.layout import Layout
from mkkdumprd.crashkernel.size import KiB, MiB, format_size, round_up
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.human_size import human_size as human

MARGIN_PERCENT = 20
MARGIN_FIXED = 16 * MiB
ROUND_TO = 16 * MiB
COLLECTOR_PROCESS = 12 * MiB
BITMAP_CAP = 32 * MiB
PER_128M_HEADER = 96
ENTRY_OVERHEAD = 1 * KiB
STRUCT_PAGE = 64
COMPRESSED_KO_FACTOR = 3
CRYPT_TERM = 8 * MiB


@dataclass(frozen=True)
class Term:
    name: str
    size: int
    source: str


@dataclass(frozen=True)
class EstimateInputs:
    arch: ArchInfo
    ram: int
    kernel_runtime: int
    kernel_source: str
    image_compressed: int
    image_unpacked: int
    image_entries: int
    image_source: str
    modules: int
    module_count: int
    cpus: int
    luks: int = 0
    hardware: tuple[Term, ...] = ()      # layout.hardware_terms, each with its source
    elfcorehdr: int = 1 * MiB            # ELF core headers kexec places in the reservation
    crypt: bool = False          # the image opens LUKS volumes (carries cryptsetup)


@dataclass(frozen=True)
class Estimate:
    terms: tuple[Term, ...]
    subtotal: int
    margin: int
    total: int
    rounded: int


def fixed_need(inp: EstimateInputs) -> int:
    """What kexec_file_load places in the reservation itself (a CMA area cannot hold it):
    the kernel's load window, the compressed image and the ELF core headers."""
    page = inp.arch.page_size
    return (round_up(inp.kernel_runtime, page) + round_up(inp.image_compressed, page)
            + inp.elfcorehdr)


def estimate(inp: EstimateInputs) -> Estimate:
    """The reservation `inp` needs; see the module docstring for every term."""
    a = inp.arch
    bitmap = min(2 * (inp.ram // a.page_size) // 8, BITMAP_CAP)
    headers = PER_128M_HEADER * -(-inp.ram // (128 * MiB))
    unpacked = inp.image_unpacked + ENTRY_OVERHEAD * inp.image_entries
    terms = [
        Term("kernel", inp.kernel_runtime, inp.kernel_source),
        Term("dynamic", a.kernel_dynamic, f"{a.name} kernel allocations (arch data)"),
        Term("compressed", inp.image_compressed, f"{inp.image_source} as loaded"),
        Term("unpacked", unpacked,
             f"{inp.image_entries} entries, files rounded to {a.page_size} B pages"),
        Term("modules", inp.modules, f"{inp.module_count} kernel modules in the image"),
        Term("percpu", inp.cpus * a.percpu,
             f"{inp.cpus} CPU(s) x {a.percpu // KiB} KiB"),
        Term("collector", COLLECTOR_PROCESS + bitmap + headers,
             f"makedumpfile 12 MiB + bitmaps {human(bitmap)} for {human(inp.ram)} RAM"),
    ]
    terms += inp.hardware
    before_memmap = sum(t.size for t in terms)
    # memmap of the reservation itself: solve x = s + x*64/page for x.
    memmap = before_memmap * STRUCT_PAGE // (a.page_size - STRUCT_PAGE)
    terms.append(Term("memmap", memmap, f"{STRUCT_PAGE} B struct page per {a.page_size} B"))
    if inp.crypt:
        terms.append(Term("crypt", CRYPT_TERM,
                          "cryptsetup, dm-crypt buffers, handed-over volume keys"))
    if inp.luks:
        terms.append(Term("luks", inp.luks, "LUKS keyslot Argon2 memory"))
    subtotal = sum(t.size for t in terms)
    margin = (subtotal - inp.luks) * MARGIN_PERCENT // 100 + MARGIN_FIXED
    total = subtotal + margin
    return Estimate(tuple(terms), subtotal, margin, total, round_up(total, ROUND_TO))


# -- inputs from the host and from files ---------------------------------------------------

_IOMEM = re.compile(r"^([0-9a-fA-F]+)-([0-9a-fA-F]+) : System RAM$")


def _iomem_ram(text: str) -> int | None:
    """Top-level System RAM in /proc/iomem; None when absent or the addresses are hidden
    (a reader without CAP_SYS_ADMIN sees every range as 00000000-00000000)."""
    total, seen, shown = 0, False, False
    for line in text.splitlines():
        m = _IOMEM.match(line)           # top level only: no leading spaces
        if m:
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            seen, shown = True, shown or start != 0 or end != 0
            total += end - start + 1
    return total if seen and shown else None


def _sysfs_ram(host: Host) -> int | None:
    """Online memory blocks times the block size (/sys/devices/system/memory, readable by all)."""
    base = "/sys/devices/system/memory"
    size = host.read_optional(f"{base}/block_size_bytes")
    try:
        block = int(size.strip(), 16) if size else 0
        online = sum(1 for name in host.listdir(base)
                     if name.startswith("memory") and name[6:7].isdigit()
                     and (host.read_optional(f"{base}/{name}/online") or "").strip() == "1")
    except (OSError, ValueError):
        return None
    return block * online if block and online else None


def system_ram(host: Host) -> tuple[int, str]:
    """(bytes, where from): top-level System RAM in /proc/iomem; without its addresses
    (not root), the online memory blocks in sysfs; else MemTotal."""
    iomem = _iomem_ram(host.read_optional("/proc/iomem") or "")
    if iomem is not None:
        return iomem, "/proc/iomem System RAM"
    sysfs = _sysfs_ram(host)
    if sysfs is not None:
        return sysfs, "/sys/devices/system/memory online blocks (/proc/iomem hides addresses)"
    mem_total = host.meminfo().get("MemTotal")
    if mem_total:
        return mem_total, "/proc/meminfo MemTotal"
    raise OperationError(
        f"cannot tell the RAM size from {host.path('/proc/iomem')} or "
        f"{host.path('/proc/meminfo')}; pass --mem SIZE")


def capture_cpus(arch: ArchInfo, host: Host, extra: Iterable[str] = ()) -> int:
    """CPUs whose per-cpu areas the capture kernel allocates.

    An nr_cpus=N of `extra` (the loaded command line, or the administrator's words; the
    last one counts, as in the kernel); else, where the arch lets the loader raise nr_cpus
    (`cmdline.max_cpus` > 1), the loader's choice given memory enough: the CPUs online, at
    most max_cpus (loader/capture_cpus.py), so the reservation recommended holds them;
    else the arch list's nr_cpus=. nr_cpus=N limits the possible CPUs; maxcpus=N only
    limits the ones brought up, the per-cpu areas still exist for every possible CPU (as
    read from the host).
    """
    from mkkdumprd.loader import capture_cpus as chosen

    possible_text = host.read_optional("/sys/devices/system/cpu/possible")
    try:
        possible = chosen.count_cpu_list(possible_text) if possible_text else 1
    except ValueError:
        possible = 1

    def nr_cpus(words: Iterable[str]) -> int | None:
        found = None
        for word in words:
            if word.startswith("nr_cpus="):
                try:
                    found = max(1, int(word.split("=", 1)[1]))
                except ValueError:
                    continue
        return found

    given = nr_cpus(extra)
    if given is not None:
        return min(given, possible) if possible_text else given
    if arch.max_cpus > 1:
        return min(chosen.online_cpus(host), arch.max_cpus, chosen.THREADS_MAX)
    default = nr_cpus(arch.cmdline_append)
    return min(default, possible) if default is not None else possible


@dataclass(frozen=True)
class ImageFacts:
    compressed: int
    unpacked: int
    entries: int
    modules: int
    module_count: int
    crypt: bool = False


def image_facts(path: Path, page_size: int) -> ImageFacts:
    from mkkdumprd.image.reader import read_members

    members = read_members(path)
    unpacked = 0
    modules = 0
    count = 0
    crypt = False
    for m in members:
        crypt = crypt or (m.kind == "file" and m.path.endswith("bin/cryptsetup"))
        if m.kind == "file":
            unpacked += round_up(m.size, page_size)
        p = m.path
        if m.kind == "file" and (p.startswith("/lib/modules/") or
                                 p.startswith("/usr/lib/modules/")):
            name = p.rsplit("/", 1)[-1]
            if name.endswith(".ko"):
                modules += m.size
                count += 1
            elif re.search(r"\.ko\.(xz|gz|zst)$", name):
                modules += m.size * COMPRESSED_KO_FACTOR
                count += 1
    return ImageFacts(path.stat().st_size, unpacked, len(members), modules, count, crypt)


def kernel_facts(path: Path | None, arch: ArchInfo) -> tuple[int, str]:
    from mkkdumprd.loader import kernel_image

    if path is None:
        return arch.kernel_fallback, f"{arch.name} fallback (no kernel file; pass --kernel)"
    info = kernel_image.runtime_size(path)
    field_name = {
        kernel_image.BZIMAGE: "bzImage init_size",
        kernel_image.ARM64_IMAGE: "arm64 Image image_size",
        kernel_image.RISCV_IMAGE: "riscv Image image_size",
        kernel_image.ELF: "ELF PT_LOAD memsz",
    }.get(info.inner or info.format)
    if info.runtime_size and field_name:
        return info.runtime_size, f"{field_name} of {path}"
    size = path.stat().st_size
    # No header tells the runtime size (s390 image): Debian's kdump-tools factor 6.
    return max(size * 6, arch.kernel_fallback), f"6 x file size of {path} ({info.detail})"


# -- the recommendation ---------------------------------------------------------------------

@dataclass(frozen=True)
class Recommendation:
    arch: str
    ram: int
    ram_source: str
    table: str
    table_size: int
    estimate: Estimate | None
    chosen: int
    reason: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    layout: Layout | None = None

    @property
    def value(self) -> str:
        """The crashkernel= values to write, space-separated (one for a plain size)."""
        if self.layout is not None:
            return " ".join(self.layout.words)
        return format_size(self.chosen)

    @property
    def cmdline(self) -> str | None:
        if not self.chosen:
            return None
        return " ".join(f"crashkernel={v}" for v in self.value.split())

    def as_json(self) -> dict[str, object]:
        est = None
        if self.estimate is not None:
            est = {
                "terms": [{"name": t.name, "bytes": t.size, "source": t.source}
                          for t in self.estimate.terms],
                "subtotal": self.estimate.subtotal,
                "margin": self.estimate.margin,
                "total": self.estimate.total,
                "rounded": self.estimate.rounded,
            }
        return {
            "arch": self.arch, "ram": self.ram, "ram_source": self.ram_source,
            "table": self.table, "table_size": self.table_size,
            "estimate": est, "chosen": self.chosen,
            "crashkernel": f"crashkernel={self.value}" if self.chosen else None,
            "reason": self.reason, "notes": list(self.notes),
            "cmdline": self.cmdline,
            "fixed_bytes": self.layout.fixed if self.layout else self.chosen,
            "cma_bytes": self.layout.cma if self.layout else 0,
            "low_bytes": self.layout.low if self.layout else 0,
            "layout": self.layout.kind if self.layout else "plain",
            "why": ([{"name": t.name, "bytes": t.size, "source": t.source}
                     for t in self.estimate.terms] if self.estimate else [])
            + ([{"name": "layout", "bytes": 0, "source": self.layout.choice}]
               if self.layout else []),
        }

    def render(self) -> str:
        out = [
            f"architecture:   {self.arch}",
            f"RAM:            {human(self.ram)} ({self.ram_source})",
            f"table default:  {format_size(self.table_size) if self.table_size else 'none'}"
            f"   (crashkernel={self.table})",
        ]
        if self.estimate is not None:
            out.append("estimate from files:")
            for t in self.estimate.terms:
                out.append(f"  {t.name:<11} {human(t.size):>10}  {t.source}")
            out.append(f"  {'subtotal':<11} {human(self.estimate.subtotal):>10}")
            out.append(f"  {'margin':<11} {human(self.estimate.margin):>10}  "
                       f"{MARGIN_PERCENT}% (LUKS excluded) + {human(MARGIN_FIXED)}")
            out.append(f"  {'total':<11} {human(self.estimate.total):>10}  "
                       f"rounded up to {human(ROUND_TO)}: {format_size(self.estimate.rounded)}")
        out.extend(f"note: {n}" for n in self.notes)
        out.append(f"recommended:    {self.cmdline}" if self.chosen
                   else "recommended:    none")
        if self.layout is not None:
            parts = [f"fixed {format_size(self.layout.fixed)}"]
            if self.layout.low:
                parts.append(f"low {format_size(self.layout.low)}")
            if self.layout.cma:
                parts.append(f"CMA {format_size(self.layout.cma)} (reusable)")
            out.append(f"why:            {' + '.join(parts)}; {self.layout.choice}")
            out.append(f"                size: {self.reason}")
        else:
            out.append(f"why:            {self.reason}")
        return "\n".join(out)


def table_size(arch: ArchInfo, ram: int) -> int:
    from mkkdumprd.crashkernel.parse import CrashkernelInvalid, parse_crashkernel

    try:
        return parse_crashkernel(f"crashkernel={arch.default_table}", ram, arch).size
    except CrashkernelInvalid:
        return 0


@dataclass(frozen=True)
class LayoutInputs:
    use_cma: bool
    cma_why: str
    ram_below: int | None       # System RAM below the arch's LOW_MAX (None: unknown)


def recommend(arch: ArchInfo, ram: int, ram_source: str,
              inputs: EstimateInputs | None, notes: Iterable[str] = (),
              layout_inputs: LayoutInputs | None = None) -> Recommendation:
    tsize = table_size(arch, ram)
    if inputs is None:
        reason = ("the table default for this RAM size; pass --image (and --kernel) for an "
                  "estimate sized to the real capture image")
        if not tsize:
            reason = (f"the {arch.name} table reserves nothing for {human(ram)} of RAM; "
                      "pass --image for an estimate")
        return Recommendation(arch.name, ram, ram_source, arch.default_table, tsize, None,
                              tsize, reason, tuple(notes))
    est = estimate(inputs)
    chosen = est.rounded
    if chosen >= ram // 2:
        reason = (f"the estimate {format_size(chosen)} is half the RAM or more: the capture "
                  "image is too big for this machine; shrink it")
    elif not tsize:
        reason = "the estimate from the real files (the table reserves nothing at this RAM size)"
    elif chosen > tsize:
        reason = (f"the estimate from the real files is {format_size(chosen - tsize)} above the "
                  "table default, which would be too small for this image")
    elif chosen < tsize:
        reason = (f"the estimate from the real files; the table default would reserve "
                  f"{format_size(tsize - chosen)} more than this image needs")
    else:
        reason = "the estimate from the real files equals the table default"
    lay = None
    if layout_inputs is not None and chosen < ram // 2:
        from mkkdumprd.crashkernel.layout import choose

        lay = choose(arch, est.total, est.rounded, fixed_need(inputs), ram,
                     layout_inputs.ram_below, layout_inputs.use_cma, layout_inputs.cma_why)
    return Recommendation(arch.name, ram, ram_source, arch.default_table, tsize, est, chosen,
                          reason, tuple(notes), lay)
