"""kdump: the user's executables (kdump_pre, kdump_post, kdump_emergency, extra_bins, the
executables in /etc/kdump/pre.d, post.d and emergency.d) and a core collector other than
makedumpfile, each with what it needs to run.

They keep their host paths, so the paths in kdump.conf work unchanged in the image. A
script whose interpreter is /bin/sh runs with the image's shell, so its host /bin/sh (dash,
bash) is not pulled in beside busybox.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.elf.entries import binary_entries, find_binary
from mkkdumprd.errors import UsageError
from mkkdumprd.image.spec import Entry, file_entry

HOOK_DIRS = ("/etc/kdump/pre.d", "/etc/kdump/post.d", "/etc/kdump/emergency.d")
# The capture image's /init mounts tmpfs on these: a file kept there would be hidden.
HIDDEN_AT_DUMP_TIME = (PurePosixPath("/tmp"), PurePosixPath("/run"))


def _hidden_under(path: PurePosixPath) -> PurePosixPath | None:
    return next((d for d in HIDDEN_AT_DUMP_TIME if path == d or d in path.parents), None)


def _check_not_hidden(ctx: BuildContext, what: str, name: str, path: PurePosixPath) -> None:
    """Refuse a file that /init's tmpfs on /tmp or /run would cover at dump time (the image
    keeps host paths), as written or through its symlinks."""
    _, links = ctx.sysroot.resolve_links(path)
    for p in (path, *(link for link, _ in links), ctx.sysroot.resolve(path)):
        hidden = _hidden_under(PurePosixPath(p))
        if hidden is not None:
            via = "" if p == path else f" (through {p})"
            raise UsageError(f"{what} {name} is under {hidden}{via}, which the capture image "
                             f"covers with a tmpfs at dump time, so it would not be found; "
                             f"move it elsewhere (e.g. /usr/local/bin) and fix "
                             f"{ctx.config.source}")


def _locate(ctx: BuildContext, what: str, name: str) -> PurePosixPath:
    if "/" in name:
        if not ctx.sysroot.is_file(name):
            raise UsageError(f"{what} {name} does not exist in {ctx.sysroot.root}; fix the path "
                             f"in {ctx.config.source}")
        path = PurePosixPath(name)
    else:
        found = find_binary(ctx.sysroot, name)
        if found is None:
            raise UsageError(f"{what} {name} is not on the PATH of {ctx.sysroot.root}; give its "
                             f"full path in {ctx.config.source} or install it")
        path = found
    _check_not_hidden(ctx, what, name, path)
    if not ctx.sysroot.is_executable(path):
        raise UsageError(f"{what} {name} is not executable; chmod +x it or fix "
                         f"{ctx.config.source}")
    return path


def _hook_dir_files(ctx: BuildContext) -> tuple[list[PurePosixPath], list[str]]:
    run, skipped = [], []
    for d in HOOK_DIRS:
        for name in ctx.sysroot.listdir(d):
            p = PurePosixPath(d) / name
            if not ctx.sysroot.is_file(p):
                continue
            if ctx.sysroot.is_executable(p):
                run.append(p)
            else:
                skipped.append(str(p))
    return run, skipped


def _wanted(ctx: BuildContext) -> list[tuple[str, PurePosixPath]]:
    c = ctx.config
    out = []
    if c.kdump_pre:
        out.append(("kdump_pre", _locate(ctx, "kdump_pre", c.kdump_pre)))
    if c.kdump_post:
        out.append(("kdump_post", _locate(ctx, "kdump_post", c.kdump_post)))
    if c.kdump_emergency:
        out.append(("kdump_emergency", _locate(ctx, "kdump_emergency", c.kdump_emergency)))
    out.extend(("extra_bins", _locate(ctx, "extra_bins", b)) for b in c.extra_bins)
    collector = c.core_collector[0]
    if PurePosixPath(collector).name != "makedumpfile":
        out.append(("core_collector", _locate(ctx, "core_collector", collector)))
    out.extend((f"{p.parent.name} hook", p) for p in _hook_dir_files(ctx)[0])
    return out


def entries(ctx: BuildContext) -> list[Entry]:
    out: list[Entry] = []
    for what, path in _wanted(ctx):
        reason = ctx.reason(f"{what} from {ctx.config.source}")
        real = ctx.sysroot.real(path)
        head = ctx.sysroot.read_head(path, 256)
        if head.startswith(b"#!") and head[2:].split(maxsplit=1)[:1] in ([b"/bin/sh"], []):
            out.append(file_entry(str(path), real, reason, mode=0o755))
        else:
            out.extend(binary_entries([path], ctx.sysroot, reason, machine=ctx.arch))
    return out


def check(ctx: BuildContext) -> list[str]:
    return [f"{p} is not executable and is left out of the capture image"
            for p in _hook_dir_files(ctx)[1]]
