"""Finding module files in a module directory, and reading all their `.modinfo` at once.

The walk follows depmod: every `*.ko[.xz|.zst|.gz]` below the directory, `build` and
`source` skipped, symlinked directories not followed. The `.modinfo` reads run in a
process pool, because pyelftools parsing (and xz decompression) is CPU-bound Python.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from mkkdumprd.host import Host
from mkkdumprd.kmod.modinfo import exported_symbols, parse_modinfo, read_sections
from mkkdumprd.kmod.names import is_module_file

SKIP_DIRS = frozenset({"build", "source"})
DirId = tuple[str, int, int]  # a directory as seen: (path, mtime_ns, inode)
_CHUNK = 48
_SERIAL_BELOW = 64  # a pool costs ~50 ms to start: not worth it for a few modules


@dataclass(frozen=True)
class ScannedModule:
    """What depmod takes from one module's `.modinfo` and exported symbol names."""

    relpath: str
    depends: tuple[str, ...]
    aliases: tuple[str, ...]
    softdeps: tuple[str, ...]
    firmware: tuple[str, ...]
    exports: tuple[str, ...]


@dataclass(frozen=True)
class ModuleTree:
    """One walk of a module directory, without a stat of each module file: the module
    files a `.modinfo` scan reads, and the directories that show the scan still
    describes the tree (ModuleIndex.dirs)."""

    root: Path
    # every directory walked, the root first: (path, mtime_ns, inode)
    dirs: tuple[DirId, ...]
    modules: tuple[str, ...]        # module file paths relative to the root, sorted


def walk_tree(kmoddir: Path) -> ModuleTree:
    """`kmoddir` walked as depmod does (see the module's docstring)."""
    root = str(kmoddir)
    dirs: list[DirId] = []
    mods: list[str] = []
    stack = [(root, "")]
    while stack:
        path, rel = stack.pop()
        try:
            st = os.stat(path)
            it = os.scandir(path)
        except OSError:
            continue
        dirs.append((path, st.st_mtime_ns, st.st_ino))
        prefix = f"{rel}/" if rel else ""
        with it:
            for e in it:
                name = e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if name not in SKIP_DIRS:
                            stack.append((e.path, prefix + name))
                        continue
                    if is_module_file(name):
                        mods.append(prefix + name)
                except OSError:  # a symlink loop (ELOOP) or an unreadable link
                    continue
    mods.sort()
    return ModuleTree(Path(kmoddir), tuple(dirs), tuple(mods))


def module_files(kmoddir: Path, tree: ModuleTree | None = None) -> list[str]:
    """The relative path of every module file below `kmoddir` (from `tree` when it was
    walked already), sorted: regular files or links to them, as for depmod."""
    tree = walk_tree(kmoddir) if tree is None else tree
    out: list[str] = []
    stat = os.stat
    isreg = S_ISREG
    base = f"{kmoddir}/"
    for rel in tree.modules:
        try:
            st = stat(base + rel)
        except OSError:   # a symlink loop (ELOOP), dangling or unreadable link: no
            continue      # module, as for depmod
        if isreg(st.st_mode):
            out.append(rel)
    return out


def _scan_one(host: Host, kmoddir: Path, relpath: str) -> ScannedModule:
    found = read_sections(host, kmoddir / relpath, (".modinfo", "__ksymtab_strings"))
    info = parse_modinfo(found.get(".modinfo", b""))
    return ScannedModule(relpath, info.depends, info.aliases, info.softdeps, info.firmware,
                         exported_symbols(found.get("__ksymtab_strings", b"")))


def _scan_chunk(host: Host, kmoddir: Path, relpaths: Sequence[str]) -> list[ScannedModule]:
    return [_scan_one(host, kmoddir, r) for r in relpaths]


def scan_modinfo(host: Host, kmoddir: Path, relpaths: Sequence[str],
                 jobs: int | None = None) -> list[ScannedModule]:
    """`.modinfo` of each module (`kmoddir` is a path on `host`), in `relpaths`' order."""
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(relpaths) < _SERIAL_BELOW:
        return _scan_chunk(host, kmoddir, relpaths)
    chunks = [relpaths[i: i + _CHUNK] for i in range(0, len(relpaths), _CHUNK)]
    from concurrent.futures import ProcessPoolExecutor  # (multiprocessing): only for a scan

    out: list[ScannedModule] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(_scan_chunk, [host] * len(chunks), [kmoddir] * len(chunks), chunks):
            out.extend(part)
    return out
