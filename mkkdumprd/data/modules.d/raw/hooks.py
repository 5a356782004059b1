"""raw: host-only, the drivers of the raw disk."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.kmod.discovery import modules_for_block_device


def kernel_modules(ctx: BuildContext) -> list[str]:
    if not ctx.hostonly or ctx.target.host_device is None:
        return []
    found = modules_for_block_device(ctx.machine, str(ctx.target.host_device))
    # Discovery reports modaliases too; those of built-in drivers resolve to nothing.
    return [n for n in sorted(found) if ctx.index is None or ctx.index.lookup(n)]
