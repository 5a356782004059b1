"""Cached forms of the slow, host-derived parts of a build (see assemble/cache.py).

- the kernel's ModuleIndex (modules.alias alone is ~26,000 patterns; a tree without
  depmod's files needs every `.modinfo` read), keyed by the identity of every file at
  the top of the module directory and of every directory below it: installing, removing
  or renaming a module changes its directory, running depmod changes the index files;
- parsed ELF headers, keyed by (device, inode, size, mtime) as objects.py keeps them;
- compiled jinja2 templates, keyed by the template's source checksum.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import jinja2

from mkkdumprd.assemble import cache
from mkkdumprd.kmod.index import ModuleIndex

_SKIP_DIRS = frozenset({"build", "source"})
_INDEX_FORMAT = 2  # 2: ModuleIndex holds the Host it reads through
_ELF_FORMAT = 1
_ELF_MAX = 20_000
# Indexes handed out by module_index → (cache name, key, firmware lists when stored).
_stored: weakref.WeakKeyDictionary[ModuleIndex, tuple[str, tuple[object, ...], int]] = \
    weakref.WeakKeyDictionary()


def _tree_key(kmoddir: Path) -> tuple[object, ...]:
    files: list[tuple[str, cache.FileId]] = []
    dirs: list[tuple[str, int, int]] = []
    stack = [str(kmoddir)]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
            it = os.scandir(d)
        except OSError:
            continue
        dirs.append((d, st.st_mtime_ns, st.st_ino))
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if e.name not in _SKIP_DIRS:
                        stack.append(e.path)
                elif d == str(kmoddir) and e.is_file():
                    fid = cache.file_id(e.path)
                    if fid is not None:
                        files.append((e.name, fid))
    return (_INDEX_FORMAT, tuple(sorted(files)), tuple(sorted(dirs)))


def module_index(kmoddir: Path, kver: str) -> ModuleIndex:
    """ModuleIndex.load(kmoddir, kver), from the cache while the tree is unchanged."""
    kmoddir = Path(kmoddir).absolute()
    if cache.cache_dir() is None:
        return ModuleIndex.load(kmoddir, kver)
    name = f"{kmoddir}\0{kver}"
    key = _tree_key(kmoddir)
    found = cache.load("kmod-index", name, key)
    if isinstance(found, ModuleIndex) and found.kver == kver and found.kmoddir == kmoddir:
        _stored[found] = (name, key, found.firmware_read())
        return found
    index = ModuleIndex.load(kmoddir, kver)
    len(index.aliases)  # parse modules.alias now, so the cached copy holds it parsed
    cache.store("kmod-index", name, key, index)
    _stored[index] = (name, key, 0)
    return index


def update_module_index(index: ModuleIndex) -> None:
    """Store `index` again when this build read firmware lists the cached copy lacks."""
    known = _stored.get(index)
    if known is not None and index.firmware_read() > known[2]:
        name, key, _ = known
        cache.store("kmod-index", name, key, index)
        _stored[index] = (name, key, index.firmware_read())


def load_elf_objects() -> int:
    """Seed objects.py's parse cache from disk; returns how many entries it now has."""
    from mkkdumprd.elf import objects

    found = cache.load("elf-objects", "all", _ELF_FORMAT)
    if isinstance(found, dict):
        objects.remember(found)
    return len(objects.known())


def save_elf_objects(before: int) -> None:
    """Store the parse cache when this run parsed files it did not have."""
    from mkkdumprd.elf import objects

    known = objects.known()
    if len(known) == before:
        return
    items = list(known.items())[-_ELF_MAX:]
    cache.store("elf-objects", "all", _ELF_FORMAT, dict(items))


class TemplateCache(jinja2.BytecodeCache):
    """jinja2's compiled templates in the build cache (atomic, versioned, checked)."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = cache.load("jinja", bucket.key, bucket.checksum)
        if isinstance(data, bytes):
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.code is not None:
            cache.store("jinja", bucket.key, bucket.checksum, bucket.bytecode_to_string())


def template_cache() -> jinja2.BytecodeCache | None:
    return TemplateCache() if cache.cache_dir() is not None else None
