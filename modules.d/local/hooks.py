"""local: the filesystem module of the target and, host-only, the drivers of its disk."""

from __future__ import annotations

from mkkdumprd.build.hooks import BuildContext
from mkkdumprd.kmod.discovery import fs_module, modules_for_block_device


def kernel_modules(ctx: BuildContext) -> list[str]:
    out: list[str] = []
    if ctx.target.fstype:
        out.append(fs_module(ctx.target.fstype))
    if ctx.hostonly and ctx.target.host_device is not None:
        out.extend(modules_for_block_device(ctx.system, ctx.target.host_device))
    return out
