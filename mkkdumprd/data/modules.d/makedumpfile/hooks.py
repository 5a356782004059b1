"""makedumpfile: the core_collector's options are checked by the makedumpfile the image
ships, so a typo fails the build, not the dump."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mkkdumprd.assemble.collector_check import collector_problems
from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.elf.entries import find_binary
from mkkdumprd.errors import UsageError


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
