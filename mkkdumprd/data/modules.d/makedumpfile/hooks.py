"""makedumpfile: the core_collector's options are checked by the makedumpfile the image
ships, so a typo fails the build, not the dump; and libgcc_s goes in beside it, which glibc
dlopens when a thread exits (makedumpfile --num-threads), or the dump aborts at its end with
"libgcc_s.so.1 must be installed for pthread_exit to work". The capture script preloads it
for a threaded dump (assemble/collector_threads.py): shipping it was not enough, the late
dlopen failed in a small reservation (bench/dump.py l2old at crashkernel=112M)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mkkdumprd.assemble.collector_check import collector_problems
from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.elf.closure import ElfError
from mkkdumprd.elf.entries import binary_entries, find_binary
from mkkdumprd.errors import UsageError
from mkkdumprd.image.spec import Entry

# glibc's LIBGCC_S_SO: loaded by pthread_exit/pthread_cancel to unwind a thread's stack.
LIBGCC_S = "libgcc_s.so.1"


def entries(ctx: BuildContext) -> list[Entry]:
    """libgcc_s with makedumpfile (no DT_NEEDED names it: glibc dlopens it)."""
    found = find_binary(ctx.sysroot, "makedumpfile")
    if found is None:
        return []
    try:
        out = binary_entries([found], ctx.sysroot, ctx.reason("for makedumpfile --num-threads"),
                             dlopen=(LIBGCC_S,), machine=ctx.arch)
    except ElfError:
        return []       # no libgcc_s in the root: single-threaded dumps still work
    return out          # makedumpfile's own entries again are the same entries: merged


def check(ctx: BuildContext) -> list[str]:
    argv = ctx.config.core_collector
    if not argv or PurePosixPath(argv[0]).name != "makedumpfile":
        return []
    if ctx.sysroot.root != Path("/"):
        # A sysroot's binary may be for another architecture or need the sysroot's libraries.
        return [f"core_collector options were not checked: the makedumpfile of "
                f"{ctx.sysroot.root} is not run here"]
    found = find_binary(ctx.sysroot, argv[0])
    errors, warnings = collector_problems(ctx.config, None if found is None else
                                          ctx.sysroot.path(found))
    if errors:
        raise UsageError(errors[0])
    return warnings
