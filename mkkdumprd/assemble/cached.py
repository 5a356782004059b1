"""The build cache as one object: what a run reuses from earlier runs (see assemble/cache.py).

    with BuildCache() as cache:
        index = cache.module_index(kmoddir, kver)
        ...
    # on exit: whatever this run learnt is stored

It is the one impure edge of the build: the stages stay functions of their inputs, and
only this object reads and writes the cache directory. Each part is loaded on first use
(an up-to-date check touches only the digests) and stored on exit when this run added to
it:

- the kernel's ModuleIndex (modules.alias alone is ~26,000 patterns; a tree without
  depmod's files needs every `.modinfo` read), keyed by the identity of every file at
  the top of the module directory (running depmod changes the index files) and kept
  while the directories the index recorded (ModuleIndex.dirs: its modules' directories,
  or every directory a scan walked) have their mtime and inode still: installing,
  removing or renaming a module changes its directory; stored again when the build read
  firmware lists the stored copy lacks;
- parsed ELF headers (elf/objects.py's table), keyed by (device, inode, size, mtime);
- compiled jinja2 templates, keyed by the template's source checksum (jinja2 stores them
  itself as it compiles): the shipped ones beside the package, as Python's bytecode, and
  only when that folder cannot be written here (assemble/templates.py: TemplateCache);
- sha256 of host files (assemble/digests.py), for the manifest and the up-to-date check.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mkkdumprd.assemble import cache
from mkkdumprd.assemble.digests import Digests

if TYPE_CHECKING:
    import jinja2

    from mkkdumprd.kmod.index import ModuleIndex
    from mkkdumprd.kmod.scan import DirId

# jinja2 and the module index are imported when a build asks for them: the up-to-date
# check needs only the digests.

_INDEX_FORMAT = 5  # 2: ModuleIndex holds the Host it reads through; 3: its alias scan; 4: its text;
#                   5: keyed by the top files, its own dirs compared
_ELF_FORMAT = 1
_ELF_MAX = 20_000


@contextmanager
def opened(given: BuildCache | None) -> Iterator[BuildCache]:
    """`given` as it is (its owner stores it when its own `with` ends), or a new cache that
    is stored when this block ends."""
    if given is not None:
        yield given
        return
    with BuildCache() as own:
        yield own


class BuildCache:
    """One run's view of the build cache; a context manager that stores on exit."""

    def __init__(self) -> None:
        self._digests: Digests | None = None
        self._elf_before: int | None = None         # parse-table size after seeding
        # Indexes handed out → (cache name, key, firmware lists read when stored).
        # (index, cache name, cache key, what the stored copy holds: _IndexState)
        self._indexes: list[tuple[ModuleIndex, str, tuple[object, ...], _IndexState]] = []
        self._prefetched: _Prefetch | None = None
        self._digest_thread: threading.Thread | None = None

    def __enter__(self) -> BuildCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # What a failed build learnt is as valid as what a good one did: every value is
        # keyed by the identity of the files it came from.
        self.save()

    # ---- the parts -----------------------------------------------------------------------

    def prefetch_module_index(self, kmoddir: Path, kver: str) -> None:
        """Start module_index(kmoddir, kver) in a thread, which module_index() then joins.

        An index load reads modules.dep and stats the directories of its modules (~900
        in Debian's kernel), partly with the GIL released: the build's first step (the
        plan: module.toml files, the target) and its imports run meanwhile. Errors are raised
        by module_index(), where the build would have met them."""
        kmoddir = Path(kmoddir).absolute()
        if self._prefetched is not None and self._prefetched.key == (kmoddir, kver):
            return
        # What the thread runs is imported here, first: two threads importing one package
        # at the same time can deadlock on its import locks (_DeadlockError).
        import importlib

        for name in ("mkkdumprd.kmod.index", "mkkdumprd.kmod.scan"):
            importlib.import_module(name)
        pre = _Prefetch((kmoddir, kver))
        self._prefetched = pre

        def work() -> None:
            from mkkdumprd.kmod.index import IndexNotCurrent

            try:
                pre.index = self._load_index(kmoddir, kver, scan=False)
            except IndexNotCurrent:
                pass                      # module_index() loads it, scan and all
            except BaseException as exc:  # handed to the caller of module_index()
                pre.error = exc

        pre.thread = threading.Thread(target=work, name="mkkdumprd-index", daemon=True)
        pre.thread.start()

    def module_index(self, kmoddir: Path, kver: str) -> ModuleIndex:
        """ModuleIndex.load(kmoddir, kver), from the cache while the tree is unchanged."""
        kmoddir = Path(kmoddir).absolute()
        pre = self._prefetched
        if pre is not None and pre.key == (kmoddir, kver):
            self._prefetched = None
            pre.join()
            if pre.error is not None:
                raise pre.error
            if pre.index is not None:
                return pre.index
            # depmod's files were missing or stale: the .modinfo scan (a process pool) is
            # started here, not from the thread while this one may be importing.
        return self._load_index(kmoddir, kver)

    def _load_index(self, kmoddir: Path, kver: str, *, scan: bool = True) -> ModuleIndex:
        from mkkdumprd.kmod.index import ModuleIndex

        kmoddir = Path(kmoddir).absolute()
        if cache.cache_dir() is None:
            return ModuleIndex.load(kmoddir, kver, scan=scan)
        name = f"{kmoddir}\0{kver}"
        key = _top_key(kmoddir)
        found = cache.load("kmod-index", name, key)
        if isinstance(found, ModuleIndex) and found.kver == kver and \
                found.kmoddir == kmoddir and _unchanged(found.dirs):
            self._indexes.append((found, name, key, _state(found)))
            return found
        index = ModuleIndex.load(kmoddir, kver, scan=scan)
        # Stored once, by save() when the build is done, as the build left it: with the
        # aliases parsed if it asked for one (ext4's softdep on crc32c does) and the firmware
        # lists it read. Storing it here as well pickled it twice in a cold build.
        self._indexes.append((index, name, key, _NOT_STORED))
        return index

    def elf_objects(self) -> None:
        """Seed elf/objects.py's parse table from the cache (once per run)."""
        if self._elf_before is not None:
            return
        from mkkdumprd.elf import objects

        found = cache.load("elf-objects", "all", _ELF_FORMAT)
        if isinstance(found, dict):
            objects.remember(found)
        self._elf_before = len(objects.known())

    def templates(self) -> jinja2.BytecodeCache | None:
        """jinja2's bytecode cache: the shipped templates' beside the package (like Python's
        bytecode, whether the build cache is on or not), the others' in the build cache."""
        from mkkdumprd.assemble.templates import TemplateCache

        return TemplateCache(use_build_cache=cache.cache_dir() is not None)

    def prefetch_digests(self, paths: Iterable[str]) -> None:
        """Start working out the sha256 of `paths` in a thread; sha256() waits for it.

        The thread alone uses the digest table until then, so sha256() finds them known."""
        self._join_digests()
        if self._digests is None:
            self._digests = Digests.load()
        digests, todo = self._digests, list(paths)

        def work() -> None:
            for path in todo:
                try:
                    digests.sha256(path)
                except Exception:  # sha256() meets it again, where it did before
                    continue

        self._digest_thread = threading.Thread(target=work, name="mkkdumprd-digests",
                                               daemon=True)
        self._digest_thread.start()

    def _join_digests(self) -> None:
        if self._digest_thread is not None:
            self._digest_thread.join()
            self._digest_thread = None

    def sha256(self, path: str) -> str | None:
        """The file's sha256, None when it is missing or unreadable."""
        self._join_digests()
        if self._digests is None:
            self._digests = Digests.load()
        return self._digests.sha256(path)

    # ---- storing -------------------------------------------------------------------------

    def save(self) -> None:
        """Store what this run added; the cache is only an optimisation, failures are silent."""
        if self._prefetched is not None:  # a build that stopped before it took the index
            self._prefetched.join()
        self._join_digests()
        for i, (index, name, key, stored) in enumerate(self._indexes):
            now = _state(index)
            if stored is _NOT_STORED or now.firmware_read > stored.firmware_read or \
                    (now.aliases_parsed and not stored.aliases_parsed):
                cache.store("kmod-index", name, key, index)
                self._indexes[i] = (index, name, key, now)
        if self._elf_before is not None:
            from mkkdumprd.elf import objects

            known = objects.known()
            if len(known) != self._elf_before:
                cache.store("elf-objects", "all", _ELF_FORMAT,
                            dict(list(known.items())[-_ELF_MAX:]))
                self._elf_before = len(known)
        if self._digests is not None:
            self._digests.save()


@dataclass
class _Prefetch:
    """A module index being loaded in a thread (BuildCache.prefetch_module_index)."""

    key: tuple[Path, str]
    thread: threading.Thread | None = None
    index: ModuleIndex | None = None
    error: BaseException | None = None

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


@dataclass(frozen=True)
class _IndexState:
    """What a ModuleIndex holds beyond the tree: worth storing again when it grows."""

    firmware_read: int
    aliases_parsed: bool


_NOT_STORED = _IndexState(-1, False)  # a freshly loaded index: save() stores it


def _state(index: ModuleIndex) -> _IndexState:
    return _IndexState(index.firmware_read(), index.aliases_parsed())


def _top_key(kmoddir: Path) -> tuple[object, ...]:
    """The identity of the regular files directly in the module folder (depmod's index
    files among them); the directories below are compared by _unchanged()."""
    files: list[tuple[str, cache.FileId]] = []
    try:
        with os.scandir(kmoddir) as it:
            for e in it:
                if e.is_file():
                    fid = cache.file_id(e.path)
                    if fid is not None:
                        files.append((e.name, fid))
    except OSError:
        pass
    return (_INDEX_FORMAT, tuple(sorted(files)))


def _unchanged(dirs: tuple[DirId, ...]) -> bool:
    """Each directory an index recorded has its recorded mtime and inode still."""
    if not dirs:
        return False
    try:
        for path, mtime, ino in dirs:
            st = os.stat(path)
            if st.st_mtime_ns != mtime or st.st_ino != ino:
                return False
    except OSError:
        return False
    return True
