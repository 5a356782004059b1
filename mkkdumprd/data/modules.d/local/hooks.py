"""local: the filesystem module of the target and, host-only, the drivers of its disk."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.kmod.discovery import fs_module, modules_for_block_device


def kernel_modules(ctx: BuildContext) -> list[str]:
    out: list[str] = []
    if ctx.target.fstype:
        out.append(fs_module(ctx.target.fstype))
    if ctx.hostonly and ctx.target.host_device is not None:
        found = modules_for_block_device(ctx.machine, str(ctx.target.host_device))
        # Discovery reports modaliases too; those of built-in drivers resolve to nothing.
        out.extend(n for n in sorted(found) if ctx.index is None or ctx.index.lookup(n))
    return out
