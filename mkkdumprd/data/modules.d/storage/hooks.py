"""storage: the settings of storage.sh, lvm.conf and mdadm.conf, the layers' kernel
modules, and the build-time refusal of LUKS where the capture cannot open it."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.image import layout
from mkkdumprd.image.spec import Entry, data_entry
from mkkdumprd.storage import capture
from mkkdumprd.storage.crypt_support import check_crash_dm_crypt

# Without a known layout (--add for another machine): the drivers each layer may need.
_GENERIC = {
    "lvm": ["dm_mod", "dm_thin_pool", "dm_snapshot", "dm_mirror", "dm_raid"],
    "mdraid": ["md_mod", "raid0", "raid1", "raid10", "raid456", "linear"],
    "crypt": ["dm_crypt", "configfs"],
    "btrfs": ["btrfs"],
}


def template_vars(ctx: BuildContext) -> capture.StorageSettings:
    return capture.settings(ctx.target.stack, ctx.active)


def kernel_modules(ctx: BuildContext) -> list[str]:
    stack = ctx.target.stack
    if stack is not None:
        extra = ["configfs"] if "crypt" in ctx.active else []
        return [*stack.kernel_modules(), *extra]
    return [m for name in ctx.active for m in _GENERIC.get(name, [])]


def entries(ctx: BuildContext) -> list[Entry]:
    stack = ctx.target.stack
    out: list[Entry] = []
    if "lvm" in ctx.active:
        out.append(data_entry(layout.LVM_CONF, capture.lvm_conf(stack),
                              ctx.reason("LVM settings: only the target's PVs, no udev"),
                              mode=0o644))
    if "mdraid" in ctx.active:
        out.append(data_entry(layout.MDADM_CONF, capture.mdadm_conf(stack),
                              ctx.reason("the md arrays under the target"), mode=0o644))
    return out


def check(ctx: BuildContext) -> list[str]:
    if "crypt" in ctx.active:
        check_crash_dm_crypt(ctx.sysroot, ctx.kver,
                             ctx.index.kmoddir if ctx.index is not None else None)
    return []
