"""busybox: /bin/sh and every command the active modules list in busybox_applets.

With busybox in the view, /bin/busybox goes in with its libraries (none for a static one)
and each applet is a symlink to it, so only the applets the image uses appear. Without
busybox, each command comes from the view's PATH with its library closure, and /bin/sh is
the view's shell.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.elf.entries import binary_entries, find_binary
from mkkdumprd.errors import OperationError
from mkkdumprd.image.spec import Entry, symlink_entry

_BIN = PurePosixPath("/bin")
# POSIX shells that can stand in for sh when the view has no busybox.
_SHELLS = ("sh", "dash", "bash")


def _applets(ctx: BuildContext) -> list[str]:
    return list(dict.fromkeys(["sh", *ctx.applets]))


def entries(ctx: BuildContext) -> list[Entry]:
    bb = find_binary(ctx.sysroot, "busybox")
    if bb is not None:
        out = binary_entries([bb], ctx.sysroot, ctx.reason("busybox: the shell and tools"),
                             machine=ctx.arch)
        target = str(bb)
        for a in _applets(ctx):
            link = _BIN / a
            if str(link) != target:
                out.append(symlink_entry(str(link), target, ctx.reason(f"busybox applet {a}")))
        return out
    found = []
    for a in _applets(ctx):
        p = _host_tool(ctx, a)
        if p is not None:
            found.append(p)
        elif a == "sh":
            raise OperationError(
                f"neither busybox nor a shell (sh) is installed in {ctx.sysroot.root}; install "
                f"busybox (busybox-static) to build a capture image"
            )
    out = binary_entries(found, ctx.sysroot, ctx.reason("host tool (no busybox)"),
                         machine=ctx.arch)
    sh = found[0]
    if sh != _BIN / "sh":
        out.append(symlink_entry("/bin/sh", str(sh), ctx.reason("the shell")))
    return out


def _host_tool(ctx: BuildContext, name: str) -> PurePosixPath | None:
    for cand in _SHELLS if name == "sh" else (name,):
        p = find_binary(ctx.sysroot, cand)
        if p is not None:
            return p
    return None


def check(ctx: BuildContext) -> list[str]:
    bb = find_binary(ctx.sysroot, "busybox")
    if bb is None:
        missing = [a for a in _applets(ctx) if _host_tool(ctx, a) is None]
        warn = [f"no busybox in {ctx.sysroot.root}: the capture image uses the host's tools "
                f"(installing busybox-static makes it smaller and self-contained)"]
        if missing:
            warn.append(f"the capture image has no {', '.join(missing)} (neither busybox nor "
                        f"host binaries); the dump flow fails where it needs them")
        return warn
    # busybox keeps its applet names as a NUL-separated table: a name that appears nowhere
    # between two NULs was not compiled in.
    data = ctx.sysroot.read_bytes(bb)
    names = _name_table(data)
    lacking = [a for a in _applets(ctx)
               if a.encode() not in names and b"\0" + a.encode() + b"\0" not in data]
    if lacking:
        return [f"{bb} seems to lack the applets {', '.join(lacking)}; the dump flow fails "
                f"where it needs them"]
    return []


# The table starts with the test applets `[` and `[[` and ends at a double NUL.
_TABLE_START = b"\0[\0[[\0"
_TABLE_MAX = 1 << 16


def _name_table(data: bytes) -> set[bytes]:
    """The names in busybox's applet name table, found without splitting the ~2 MB binary
    (~30 ms; one search for each name not in the table is ~1 ms): each is NUL-delimited in
    `data`, so a name found here is one the whole-file check would find. Empty when the
    table's start is not found (then each name is searched for)."""
    start = data.find(_TABLE_START)
    if start < 0:
        return set()
    end = data.find(b"\0\0", start + 1, start + _TABLE_MAX)
    if end < 0:
        end = min(len(data), start + _TABLE_MAX)
        end = data.rfind(b"\0", start + 1, end)
    return set(data[start + 1:end].split(b"\0"))
