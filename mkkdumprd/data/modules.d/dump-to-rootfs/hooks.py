"""dump-to-rootfs: the root filesystem's module and, host-only, its disk's drivers."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.kmod.discovery import fs_module, modules_for_block_device


def kernel_modules(ctx: BuildContext) -> list[str]:
    root = ctx.rootfs
    if root is None:
        return []
    out = [fs_module(root.fstype)] if root.fstype else []
    if root.host_device is not None:
        found = modules_for_block_device(ctx.machine, str(root.host_device))
        # Discovery reports modaliases too; those of built-in drivers resolve to nothing.
        out.extend(n for n in sorted(found) if ctx.index is None or ctx.index.lookup(n))
    return out
