"""The crashkernel= the guest boots with: what `mkkdumprd crashkernel recommend` gives for
the guest's RAM, the image and the kernel under test."""

from __future__ import annotations

from pathlib import Path

from mkkdumprd.arch import ArchInfo
from mkkdumprd.crashkernel import recommend as rec
from mkkdumprd.crashkernel.size import MiB
from mkkdumprd.host import Host


def recommended(arch: ArchInfo, ram_mb: int, image: Path, kernel: Path) -> rec.Recommendation:
    facts = rec.image_facts(image, arch.page_size)
    kruntime, ksource = rec.kernel_facts(kernel, arch)
    inputs = rec.EstimateInputs(
        arch=arch, ram=ram_mb * MiB, kernel_runtime=kruntime, kernel_source=ksource,
        image_compressed=facts.compressed, image_unpacked=facts.unpacked,
        image_entries=facts.entries, image_source=str(image), modules=facts.modules,
        module_count=facts.module_count, cpus=rec.capture_cpus(arch, Host.this_machine()),
        luks=0)
    return rec.recommend(arch, ram_mb * MiB, "the guest's RAM", inputs)
