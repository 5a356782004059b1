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
    # busybox keeps its applet names as a NUL-separated table: a missing name means the
    # applet was not compiled in.
    # One split instead of one scan of the ~2 MB binary per applet (4x faster here); the
    # first and last pieces have no NUL on one side, so they are not names.
    names = set(ctx.sysroot.read_bytes(bb).split(b"\0")[1:-1])
    lacking = [a for a in _applets(ctx) if a.encode() not in names]
    if lacking:
        return [f"{bb} seems to lack the applets {', '.join(lacking)}; the dump flow fails "
                f"where it needs them"]
    return []
