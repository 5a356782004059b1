"""Does the live reservation hold the capture kernel and image that are loaded?

The reservation is set at boot; the image is built later and may outgrow it. A reservation
below the estimate (recommend.py) for the loaded kernel and image lets the load succeed and
the capture kernel die of OOM before /init, so `load`, `start`/`reload`/`restart` and
`status` compare the two. Read through the Host, never written: the fixed part from
/sys/kernel/kexec/crash_size (the compat name /sys/kernel/kexec_crash_size before that),
its ranges from /proc/iomem ("Crash kernel", low and high), the CMA part from
/sys/kernel/kexec/crash_cma_ranges (kexec_crash_cma_ranges; CMA is not in /proc/iomem).
The CMA area can hold what the capture kernel allocates, never what kexec places (kernel
load window, image, headers): those need the fixed part, so both are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.arch import ArchInfo
from mkkdumprd.crashkernel import recommend as rec
from mkkdumprd.crashkernel.size import format_size
from mkkdumprd.errors import MkkdumprdError
from mkkdumprd.host import Host
from mkkdumprd.human_size import human_size as human
from mkkdumprd.loader import status

CMA_RANGES = (PurePosixPath("/sys/kernel/kexec/crash_cma_ranges"),
              PurePosixPath("/sys/kernel/kexec_crash_cma_ranges"))


def reserved_fixed(host: Host) -> int | None:
    """Bytes of the fixed reservation (high + low), the new sysfs name first."""
    return status.reserved_bytes(host)


def reserved_cma(host: Host) -> int:
    """Bytes of the crashkernel=,cma area: one inclusive hex `start-end` line per range."""
    for p in CMA_RANGES:
        text = host.read_optional(p)
        if text is None:
            continue
        total = 0
        for line in text.split():
            a, _, b = line.partition("-")
            try:
                total += int(b, 16) - int(a, 16) + 1
            except ValueError:
                continue
        return total
    return 0


@dataclass(frozen=True)
class Fit:
    reserved: int
    needed: int          # the estimate's total
    recommended: int     # the estimate rounded up, as `crashkernel recommend` prints it
    image: str
    cma: int = 0         # the live ,cma area
    fixed_needed: int = 0  # what kexec places in the fixed part (layout.PLACEMENT_SLACK in)
    advice: str = ""     # the crashkernel= words that would fit

    @property
    def fixed_short(self) -> bool:
        return self.reserved < self.fixed_needed

    @property
    def short(self) -> bool:
        return self.reserved + self.cma < self.needed or self.fixed_short

    def warning(self) -> str:
        words = self.advice or f"crashkernel={format_size(self.recommended)}"
        if self.fixed_short:
            what = (f"the fixed crashkernel reservation ({human(self.reserved)}) is below the "
                    f"{human(self.fixed_needed)} kexec must place in it for {self.image} "
                    "(kernel load window, image, headers; a CMA area cannot hold them)")
        elif self.cma:
            what = (f"the crashkernel reservation ({human(self.reserved)} fixed + "
                    f"{human(self.cma)} CMA) is below the {human(self.needed)} estimated "
                    f"for {self.image}")
        else:
            what = (f"the crashkernel reservation ({human(self.reserved)}) is below the "
                    f"{human(self.needed)} estimated for {self.image}")
        return (f"{what}: the capture kernel may run out of memory before it can dump; "
                f"reserve {words} (`mkkdumprd crashkernel apply`, then reboot) or shrink "
                "the image")

    def as_json(self) -> dict[str, object]:
        return {"reserved": self.reserved, "cma": self.cma, "estimate": self.needed,
                "fixed_needed": self.fixed_needed, "recommended": self.recommended,
                "advice": self.advice or None, "below_estimate": self.short}


def reservation_fit(host: Host, arch: ArchInfo, kernel: str | PurePosixPath | None,
                    initrd: str | PurePosixPath | None,
                    cmdline: str = "") -> Fit | None:
    """The comparison, or None when it cannot be made (no reservation, no image, files
    that cannot be read): a status display must not fail for want of an estimate."""
    from mkkdumprd.crashkernel import layout as lay

    reserved = reserved_fixed(host)
    if not reserved or initrd is None:
        return None
    kver = lay.kver_of(PurePosixPath(kernel)) if kernel is not None else None
    cfg = lay.read_kernel_config(host, kver)
    try:
        facts = rec.image_facts(host.path(initrd), arch.page_size)
        kruntime, ksource = rec.kernel_facts(
            host.path(kernel) if kernel is not None else None, arch)
        ram, _ = rec.system_ram(host)
    except (MkkdumprdError, OSError, ValueError):
        return None
    inputs = rec.EstimateInputs(
        arch=arch, ram=ram, kernel_runtime=kruntime, kernel_source=ksource,
        image_compressed=facts.compressed, image_unpacked=facts.unpacked,
        image_entries=facts.entries, image_source=str(initrd), modules=facts.modules,
        module_count=facts.module_count,
        cpus=rec.capture_cpus(arch, host, cmdline.split()),
        hardware=tuple(rec.Term(t.name, t.size, t.source)
                       for t in lay.hardware_terms(arch, host, cfg)),
        elfcorehdr=lay.elfcorehdr_size(arch, cfg))
    est = rec.estimate(inputs)
    cma = reserved_cma(host)
    fixed_needed = rec.fixed_need(inputs) + lay.PLACEMENT_SLACK
    advice = ""
    if cma:
        # keep the layout the machine already uses: fixed + ,cma
        layout = lay.choose(arch, est.total, est.rounded, rec.fixed_need(inputs), ram,
                            lay.low_ram(host, arch.low_max) if arch.low_max else None,
                            True, "the running kernel has a crashkernel=,cma area")
        advice = layout.cmdline
    return Fit(reserved, est.total, est.rounded, str(initrd), cma,
               fixed_needed if cma else 0, advice)


def record_fit(host: Host, arch: ArchInfo, record: dict[str, object]) -> Fit | None:
    """reservation_fit for what a load record says was loaded."""
    kernel, initrd, cmdline = record.get("kernel"), record.get("initrd"), record.get("cmdline")
    return reservation_fit(host, arch, kernel if isinstance(kernel, str) else None,
                           initrd if isinstance(initrd, str) else None,
                           cmdline if isinstance(cmdline, str) else "")
