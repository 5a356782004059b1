"""raw: host-only, the drivers of the raw disk."""

from __future__ import annotations

from mkkdumprd.build.hooks import BuildContext
from mkkdumprd.kmod.discovery import modules_for_block_device


def kernel_modules(ctx: BuildContext) -> list[str]:
    if ctx.hostonly and ctx.target.host_device is not None:
        return list(modules_for_block_device(ctx.system, ctx.target.host_device))
    return []
