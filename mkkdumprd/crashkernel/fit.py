"""Does the live reservation hold the capture kernel and image that are loaded?

The reservation (/sys/kernel/kexec_crash_size, only read) is set at boot; the image is
built later and may outgrow it. A reservation below the estimate (recommend.py) for the
loaded kernel and image lets the load succeed and the capture kernel die of OOM before
/init, so `load`, `start`/`reload`/`restart` and `status` compare the two.
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


@dataclass(frozen=True)
class Fit:
    reserved: int
    needed: int          # the estimate's total
    recommended: int     # the estimate rounded up, as `crashkernel recommend` prints it
    image: str

    @property
    def short(self) -> bool:
        return self.reserved < self.needed

    def warning(self) -> str:
        return (f"the crashkernel reservation ({human(self.reserved)}) is below the "
                f"{human(self.needed)} estimated for {self.image}: the capture kernel may "
                f"run out of memory before it can dump; reserve crashkernel="
                f"{format_size(self.recommended)} (`mkkdumprd crashkernel apply`, then "
                f"reboot) or shrink the image")

    def as_json(self) -> dict[str, object]:
        return {"reserved": self.reserved, "estimate": self.needed,
                "recommended": self.recommended, "below_estimate": self.short}


def reservation_fit(host: Host, arch: ArchInfo, kernel: str | PurePosixPath | None,
                    initrd: str | PurePosixPath | None,
                    cmdline: str = "") -> Fit | None:
    """The comparison, or None when it cannot be made (no reservation, no image, files
    that cannot be read): a status display must not fail for want of an estimate."""
    reserved = status.reserved_bytes(host)
    if not reserved or initrd is None:
        return None
    try:
        facts = rec.image_facts(host.path(initrd), arch.page_size)
        kruntime, ksource = rec.kernel_facts(
            host.path(kernel) if kernel is not None else None, arch)
        ram, _ = rec.system_ram(host)
    except (MkkdumprdError, OSError, ValueError):
        return None
    est = rec.estimate(rec.EstimateInputs(
        arch=arch, ram=ram, kernel_runtime=kruntime, kernel_source=ksource,
        image_compressed=facts.compressed, image_unpacked=facts.unpacked,
        image_entries=facts.entries, image_source=str(initrd), modules=facts.modules,
        module_count=facts.module_count,
        cpus=rec.capture_cpus(arch, host, cmdline.split())))
    return Fit(reserved, est.total, est.rounded, str(initrd))


def record_fit(host: Host, arch: ArchInfo, record: dict[str, object]) -> Fit | None:
    """reservation_fit for what a load record says was loaded."""
    kernel, initrd, cmdline = record.get("kernel"), record.get("initrd"), record.get("cmdline")
    return reservation_fit(host, arch, kernel if isinstance(kernel, str) else None,
                           initrd if isinstance(initrd, str) else None,
                           cmdline if isinstance(cmdline, str) else "")
