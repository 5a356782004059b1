"""outcome: the record of what the dump did, readable after the reboot.

Debian's kernels have ramoops as a module (CONFIG_PSTORE_RAM=m) and no pmsg device
(CONFIG_PSTORE_PMSG unset), so the record reaches persistent storage through the kernel
log: the capture kernel loads ramoops over the first kernel's region (its ramoops.* words
reach the capture command line unchanged) with max_reason=4, so the kmsg dump at the
capture kernel's reboot (KMSG_DUMP_SHUTDOWN) keeps the log, record lines included, as the
next boot's dmesg-ramoops-N. ramoops goes in the image but not in modules.load: insmod of
modules.load passes no parameters, and ramoops refuses to load without them. It is
in every image whose kernel has it as a module (about 70 KiB with reed_solomon): the
command line, not the build, says whether a region exists, and a region set up after the
build then works without a rebuild.
"""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.image.spec import Entry, file_entry
from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.names import strip_compression
from mkkdumprd.records.outcome import OUTCOME_FILE, PREFIX, OutcomeSettings

RAMOOPS = "ramoops"


def _ramoops(ctx: BuildContext) -> tuple[list[str], Entry | None]:
    """ramoops' dependencies (loaded with modules.load) and ramoops itself (not)."""
    index = ctx.index
    if index is None or RAMOOPS not in index.modules:
        return [], None
    closure = resolve_modules(index, [RAMOOPS])
    mod = closure.modules[-1]
    dest = f"/lib/modules/{ctx.kver}/{strip_compression(mod.relpath)}"
    entry = file_entry(dest, mod.path, ctx.reason("ramoops, loaded by the outcome record with "
                                                  "the command line's ramoops.* words"),
                       mode=0o644, codec=mod.codec)
    return [m.name for m in closure.modules[:-1]], entry


def kernel_modules(ctx: BuildContext) -> list[str]:
    return _ramoops(ctx)[0]


def entries(ctx: BuildContext) -> list[Entry]:
    entry = _ramoops(ctx)[1]
    return [] if entry is None else [entry]


def template_vars(ctx: BuildContext) -> OutcomeSettings:
    entry = _ramoops(ctx)[1]
    return OutcomeSettings(file=OUTCOME_FILE, prefix=PREFIX,
                           ramoops_ko="" if entry is None else str(entry.path))
