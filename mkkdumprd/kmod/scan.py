"""Finding module files in a module directory, and reading all their `.modinfo` at once.

The walk follows depmod: every `*.ko[.xz|.zst|.gz]` below the directory, `build` and
`source` skipped, symlinked directories not followed. The `.modinfo` reads run in a
process pool, because pyelftools parsing (and xz decompression) is CPU-bound Python.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.host import Host
from mkkdumprd.kmod.modinfo import exported_symbols, parse_modinfo, read_sections
from mkkdumprd.kmod.names import is_module_file

_SKIP_DIRS = frozenset({"build", "source"})
_CHUNK = 48
_SERIAL_BELOW = 64  # a pool costs ~50 ms to start: not worth it for a few modules


@dataclass(frozen=True)
class ModuleFile:
    relpath: str
    mtime_ns: int


@dataclass(frozen=True)
class ScannedModule:
    """What depmod takes from one module's `.modinfo` and exported symbol names."""

    relpath: str
    depends: tuple[str, ...]
    aliases: tuple[str, ...]
    softdeps: tuple[str, ...]
    firmware: tuple[str, ...]
    exports: tuple[str, ...]


def module_files(kmoddir: Path) -> list[ModuleFile]:
    """Every module file below `kmoddir`, sorted by relative path."""
    out: list[ModuleFile] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(kmoddir / rel if rel else kmoddir)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for e in it:
                sub = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    if e.name not in _SKIP_DIRS:
                        stack.append(sub)
                elif is_module_file(e.name):
                    try:
                        if not e.is_file():
                            continue
                        mtime = e.stat().st_mtime_ns
                    except OSError:   # a symlink loop (ELOOP), dangling or unreadable
                        continue      # link: no module, as for depmod
                    out.append(ModuleFile(sub, mtime))
    out.sort(key=lambda m: m.relpath)
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
    out: list[ScannedModule] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(_scan_chunk, [host] * len(chunks), [kmoddir] * len(chunks), chunks):
            out.extend(part)
    return out
