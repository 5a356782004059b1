"""multipath: multipath.conf and the plugins multipath dlopen()s (no DT_NEEDED names them):
the tur checker and the const prioritizer that storage/capture.py's multipath.conf pins."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.errors import OperationError
from mkkdumprd.image import layout
from mkkdumprd.image.spec import Entry, data_entry
from mkkdumprd.storage import capture

# Where distributions build multipath-tools' plugin folder (Debian: /lib/multipath).
PLUGIN_DIRS = ("/lib/multipath", "/usr/lib/multipath", "/lib64/multipath",
               "/usr/lib64/multipath", "/usr/lib/x86_64-linux-gnu/multipath")
PLUGINS = ("libchecktur.so", "libprioconst.so")


def entries(ctx: BuildContext) -> list[Entry]:
    more = (ctx.rootfs.stack,) if ctx.rootfs is not None and ctx.rootfs.stack else ()
    out = [data_entry(layout.MULTIPATH_CONF, capture.multipath_conf(ctx.target.stack, more),
                      ctx.reason("multipath: only the target's WWID, no udev"), mode=0o644)]
    for d in PLUGIN_DIRS:
        if all(ctx.sysroot.is_file(f"{d}/{p}") for p in PLUGINS):
            out.extend(binary_entries([f"{d}/{p}" for p in PLUGINS], ctx.sysroot,
                                      ctx.reason("multipath's checker and prioritizer plugins"),
                                      machine=ctx.arch))
            return out
    raise OperationError(f"multipath's plugins {' and '.join(PLUGINS)} are in none of "
                         f"{', '.join(PLUGIN_DIRS)} of {ctx.sysroot.root}; install "
                         f"multipath-tools")
