"""kdump: the user's executables (kdump_pre, kdump_post, extra_bins) and a core collector
other than makedumpfile, each with what it needs to run.

They keep their host paths, so the paths in kdump.conf work unchanged in the image. A
script whose interpreter is /bin/sh runs with the image's shell, so its host /bin/sh (dash,
bash) is not pulled in beside busybox.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from mkkdumprd.build.hooks import BuildContext
from mkkdumprd.elf.install import binary_entries, find_binary
from mkkdumprd.errors import UsageError
from mkkdumprd.image.spec import Entry, file_entry


def _locate(ctx: BuildContext, what: str, name: str) -> PurePosixPath:
    if "/" in name:
        if not ctx.view.is_file(name):
            raise UsageError(f"{what} {name} does not exist in {ctx.view.root}; fix the path "
                             f"in {ctx.config.source}")
        return PurePosixPath(name)
    found = find_binary(ctx.view, name)
    if found is None:
        raise UsageError(f"{what} {name} is not on the PATH of {ctx.view.root}; give its full "
                         f"path in {ctx.config.source} or install it")
    return found


def _wanted(ctx: BuildContext) -> list[tuple[str, str]]:
    c = ctx.config
    out = []
    if c.kdump_pre:
        out.append(("kdump_pre", c.kdump_pre))
    if c.kdump_post:
        out.append(("kdump_post", c.kdump_post))
    out.extend(("extra_bins", b) for b in c.extra_bins)
    collector = c.core_collector[0]
    if PurePosixPath(collector).name != "makedumpfile":
        out.append(("core_collector", collector))
    return out


def entries(ctx: BuildContext) -> list[Entry]:
    out: list[Entry] = []
    for what, name in _wanted(ctx):
        path = _locate(ctx, what, name)
        reason = ctx.reason(f"{what} from {ctx.config.source}")
        real = ctx.view.path(ctx.view.resolve(path))
        with open(real, "rb") as f:
            head = f.readline(256)
        if head.startswith(b"#!") and head[2:].split(maxsplit=1)[:1] in ([b"/bin/sh"], []):
            out.append(file_entry(str(path), real, reason, mode=0o755))
        else:
            out.extend(binary_entries([path], ctx.view, reason))
    return out
