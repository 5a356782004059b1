"""Binaries and their library closures as image entries.

Every path is recreated in the image the way it resolves in the view: each symlink met
on the way (/lib64 -> usr/lib64, ld-linux-x86-64.so.2 -> ../lib/..., libfoo.so.1 ->
libfoo.so.1.2.3) becomes a symlink entry with the same target, and the file lands at its
real path. So a path that works on the host works in the image, and no file is ever put
under a directory that is a symlink in the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from mkkdumprd.elf.closure import LD_SO_CACHE, ElfError, Resolver
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, file_entry, symlink_entry


def find_binary(view: Host, name: str) -> PurePosixPath | None:
    """`name` on the view's PATH (or `name` itself when it is a path that exists)."""
    return view.which(name)


def binary_entries(files: Sequence[str | PurePosixPath], view: Host, reason: str, *,
                   dlopen: Sequence[str] = (), machine: str | None = None) -> list[Entry]:
    """Entries for `files` (kept at their paths) and everything the loader opens for them.

    A bare name (no '/') is looked up on the view's PATH first. `machine` (an --arch name
    such as aarch64) makes a binary built for another architecture an error naming it;
    without it the first binary sets the architecture.
    """
    resolver = Resolver(view, machine)
    out: dict[PurePosixPath, Entry] = {}
    for f in files:
        root = resolver.locate(str(f))
        for e in path_entries(view, root, reason):
            out.setdefault(e.path, e)
        for obj in resolver.objects_of(root, dlopen):
            for e in path_entries(view, obj, f"library of {root}"):
                out.setdefault(e.path, e)
    if resolver.needs_cache and view.is_file(LD_SO_CACHE):
        first = sorted(resolver.needs_cache)[0]
        for e in path_entries(view, PurePosixPath(LD_SO_CACHE),
                              f"the loader finds {first} only through ld.so.cache"):
            out.setdefault(e.path, e)
    return list(out.values())


def path_entries(view: Host, p: str | PurePosixPath, reason: str) -> list[Entry]:
    """Symlink entries for every link crossed resolving `p`, then the file itself."""
    try:
        real, links = view.resolve_links(p)
    except OSError as exc:
        raise ElfError(f"cannot resolve {p}: {exc}") from None
    entries = [symlink_entry(str(link), target, reason) for link, target in links]
    source = view.path(real)
    if not source.is_file():
        raise ElfError(f"{p} resolves to {real}, which is not a regular file")
    entries.append(file_entry(str(real), source, reason))
    return entries
