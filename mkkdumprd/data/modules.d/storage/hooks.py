"""storage: the settings of storage.sh, lvm.conf and mdadm.conf, the layers' kernel
modules, and the build-time refusal of LUKS where the capture cannot open it. The stack
under the root filesystem (failure_action dump_to_rootfs) is set up with the target's."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.image import layout
from mkkdumprd.image.spec import Entry, data_entry
from mkkdumprd.storage import capture
from mkkdumprd.storage.crypt_support import check_crash_dm_crypt
from mkkdumprd.storage.stack import MPATH_KERNEL_MODULES, Stack

# Without a known layout (--add for another machine): the drivers each layer may need.
_GENERIC = {
    "lvm": ["dm_mod", "dm_thin_pool", "dm_snapshot", "dm_mirror", "dm_raid"],
    "mdraid": ["md_mod", "raid0", "raid1", "raid10", "raid456", "linear"],
    "crypt": ["dm_crypt", "configfs"],
    "btrfs": ["btrfs"],
    "multipath": list(MPATH_KERNEL_MODULES),
}


def _rootfs_stack(ctx: BuildContext) -> tuple[Stack, ...]:
    """The root filesystem's stack, set up too when failure_action dump_to_rootfs."""
    root = ctx.rootfs
    return (root.stack,) if root is not None and root.stack is not None else ()


def template_vars(ctx: BuildContext) -> capture.StorageSettings:
    return capture.settings(ctx.target.stack, ctx.active, _rootfs_stack(ctx))


def kernel_modules(ctx: BuildContext) -> list[str]:
    stack = ctx.target.stack
    known = [m for s in (*(() if stack is None else (stack,)), *_rootfs_stack(ctx))
             for m in s.kernel_modules()]
    if stack is not None:
        extra = ["configfs"] if "crypt" in ctx.active else []
        return list(dict.fromkeys([*known, *extra]))
    return list(dict.fromkeys([*known, *(m for name in ctx.active
                                         for m in _GENERIC.get(name, []))]))


def entries(ctx: BuildContext) -> list[Entry]:
    stack = ctx.target.stack
    more = _rootfs_stack(ctx)
    out: list[Entry] = []
    if "lvm" in ctx.active:
        out.append(data_entry(layout.LVM_CONF, capture.lvm_conf(stack, more),
                              ctx.reason("LVM settings: only the target's PVs, no udev"),
                              mode=0o644))
    if "mdraid" in ctx.active:
        out.append(data_entry(layout.MDADM_CONF, capture.mdadm_conf(stack, more),
                              ctx.reason("the md arrays under the target"), mode=0o644))
    return out


def check(ctx: BuildContext) -> list[str]:
    if "crypt" in ctx.active:
        check_crash_dm_crypt(ctx.sysroot, ctx.kver,
                             ctx.index.kmoddir if ctx.index is not None else None)
    return []
