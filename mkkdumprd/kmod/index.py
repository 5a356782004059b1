"""ModuleIndex: what kmod knows about one kernel's modules, from depmod's files or `.modinfo`.

With a current depmod index the text files are read (modules.dep, modules.alias,
modules.softdep, modules.symbols, modules.builtin, modules.builtin.modinfo,
modules.order). When modules.dep or modules.alias is missing (an extracted kernel package
before depmod ran) or not current, the same tables are built from every module's
`.modinfo` instead. "Current" is proven by directories, not by a stat of each of the
~4,000 module files: a module installed, removed, renamed or replaced by rename (dpkg,
rpm, install(1)) after depmod ran changes its directory's mtime, so every directory that
holds a listed module, each of their parents and each directory directly in the module
folder must be no newer than depmod's files (DepmodDirs). A module file rewritten in place
without depmod (cp over it) is not noticed, as modprobe, reading the same index, does not
notice it either; the image still gets the file's new bytes.

`lookup()` follows kmod_module_new_from_lookup(): the first source with a hit wins, in
the order modprobe.d aliases, module names, `symbol:` aliases, modules.alias,
built-in aliases, built-in module names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.input_file import INDEX_MAX, read_input, read_input_text
from mkkdumprd.kmod.modinfo import ModinfoError, read_modinfo
from mkkdumprd.kmod.modprobe_d import ModprobeConfig, SoftDep, load_modprobe_d, parse_softdep
from mkkdumprd.kmod.names import (
    AliasTable,
    fnmatch,
    is_module_file,
    modname_from_path,
    normalize,
)
from mkkdumprd.kmod.scan import (
    SKIP_DIRS,
    DirId,
    ScannedModule,
    module_files,
    scan_modinfo,
    walk_tree,
)


class ModuleNotFound(UsageError):
    """A requested module name or alias is not provided by this kernel."""

    def __init__(self, name: str, kver: str, kmoddir: Path | None = None,
                 near: Sequence[str] = ()) -> None:
        self.name, self.kver, self.near = name, kver, tuple(near)
        where = f" in {kmoddir}" if kmoddir else ""
        hint = (f"; did you mean {', '.join(near)}?" if near
                else "; check the name with `mkkdumprd deps modules`")
        super().__init__(f"kernel module {name!r} not found for kernel {kver}{where}{hint}")


class ModuleDirMissing(UsageError):
    """No module directory for the kernel version."""

    def __init__(self, kver: str, searched: Sequence[Path]) -> None:
        self.kver, self.searched = kver, tuple(searched)
        super().__init__(
            f"no kernel modules for kernel {kver}: none of "
            f"{', '.join(str(p) for p in searched)} is a directory; install the kernel "
            f"package for {kver} or pass --kmoddir")


class IndexNotCurrent(Exception):
    """ModuleIndex.load(scan=False): depmod's files are missing or stale."""


MODULE_DIRS: tuple[str, ...] = ("/lib/modules", "/usr/lib/modules")


def find_kmoddir(view: Host, kver: str) -> Path:
    """The host path of /lib/modules/KVER (or /usr/lib/modules/KVER) inside the view."""
    searched: list[Path] = []
    for base in MODULE_DIRS:
        cand = view.path(view.resolve(f"{base}/{kver}"))
        if cand.is_dir():
            return cand
        searched.append(view.path(f"{base}/{kver}"))
    raise ModuleDirMissing(kver, searched)


@dataclass(frozen=True, eq=False)  # identity: equal trees are still different indexes
class ModuleIndex:
    """One kernel's modules: names, paths, dependencies, aliases, softdeps, built-ins."""

    kver: str
    kmoddir: Path
    source: str                                  # "index" or "modinfo"
    modules: Mapping[str, str] = field(repr=False)   # name -> relpath as in modules.dep
    deps: Mapping[str, tuple[str, ...]] = field(repr=False)  # all hard deps, providers 1st
    aliases: AliasTable = field(repr=False)
    softdeps: tuple[SoftDep, ...] = field(repr=False)    # modprobe.d first, then modules'
    builtin: frozenset[str] = field(repr=False)
    builtin_aliases: AliasTable = field(repr=False)
    order: Mapping[str, int] = field(repr=False)         # name -> place in modules.order
    config: ModprobeConfig = field(default_factory=ModprobeConfig, repr=False)
    _symbols_file: Path | None = field(default=None, repr=False)
    _firmware: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _cache: dict[str, object] = field(default_factory=dict, repr=False)
    # What shows this index still describes the tree (assemble/cached.py compares it):
    # from depmod's files, the DepmodDirs; from a scan, every directory walked.
    dirs: tuple[DirId, ...] = field(default=(), repr=False)
    # The machine whose files are read: kmoddir is a real path on it (--kmoddir may lie
    # outside a cross build's sysroot).
    host: Host = field(default_factory=Host.this_machine, repr=False)

    # ---- loading -------------------------------------------------------------------

    @classmethod
    def load(cls, kmoddir: Path, kver: str, modprobe_d: Sequence[Path] | None = None, *,
             jobs: int | None = None, use_index: bool = True,
             scan: bool = True) -> ModuleIndex:
        """The index of the modules in `kmoddir` (the /lib/modules/KVER directory).

        `modprobe_d`: modprobe.d directories (or files) whose alias/softdep/blacklist lines
        apply, as modprobe would read them; none by default. `use_index=False` ignores
        depmod's files and reads every `.modinfo`. `scan=False`: IndexNotCurrent instead
        of the `.modinfo` scan (a caller in a thread leaves the process pool to the main
        thread).
        """
        host = Host.this_machine()
        kmoddir = Path(kmoddir).absolute()
        if not host.is_dir(kmoddir):
            raise ModuleDirMissing(kver, [kmoddir])
        config = load_modprobe_d(modprobe_d) if modprobe_d else ModprobeConfig()
        builtin = _read_builtin(host, kmoddir)
        builtin_aliases = _read_builtin_aliases(host, kmoddir)
        dep = _read_dep(host, kmoddir) if use_index else None
        if dep is not None:
            seen = depmod_dirs(kmoddir, (rel for _, rel in dep.heads))
            if seen is not None and _index_is_current(seen, dep):
                order = _read_order(host, kmoddir, dep.name_of)
                return cls._from_index(host, kmoddir, kver, config, builtin,
                                       builtin_aliases, order, dep, seen.dirs)
        if not scan:
            raise IndexNotCurrent(f"{kmoddir}: depmod's index is missing or not current")
        tree = walk_tree(kmoddir)
        order = _read_order(host, kmoddir, {})
        scanned = scan_modinfo(host, kmoddir, module_files(kmoddir, tree), jobs)
        return cls._from_scan(kmoddir, kver, config, builtin, builtin_aliases, order, scanned,
                              tree.dirs)

    @classmethod
    def _from_index(cls, host: Host, kmoddir: Path, kver: str, config: ModprobeConfig,
                    builtin: frozenset[str], builtin_aliases: AliasTable,
                    order: Mapping[str, int], dep: _DepFile | None = None,
                    dirs: tuple[DirId, ...] = ()) -> ModuleIndex:
        if dep is None:
            dep = _parse_dep(_read_index(host, kmoddir / "modules.dep"), 0)
        modules: dict[str, str] = {}
        dep_paths: dict[str, list[str]] = {}
        for (name, head), tail in zip(dep.heads, dep.tails, strict=True):
            modules[name] = head
            dep_paths[name] = tail
        # depmod lists users before providers; kmod loads the list right to left.
        name_of = {rel: name for name, rel in modules.items()}
        deps = {n: tuple(name_of.get(p) or modname_from_path(p) for p in reversed(ps))
                for n, ps in dep_paths.items()}
        aliases = _FileAliases(host, kmoddir / "modules.alias")
        softdeps = list(config.softdeps)
        softdep_file = kmoddir / "modules.softdep"
        if host.is_file(softdep_file):
            for line in _read_index(host, softdep_file).splitlines():
                words = line.split(None, 2)
                if len(words) >= 2 and words[0] == "softdep":
                    softdeps.append(parse_softdep(words[1], words[2] if len(words) > 2 else ""))
        symbols = kmoddir / "modules.symbols"
        return cls(kver, kmoddir, "index", modules, deps, aliases, tuple(softdeps), builtin,
                   builtin_aliases, order, config,
                   symbols if host.is_file(symbols) else None, host=host, dirs=dirs)

    @classmethod
    def _from_scan(cls, kmoddir: Path, kver: str, config: ModprobeConfig,
                   builtin: frozenset[str], builtin_aliases: AliasTable,
                   order: Mapping[str, int], scanned: Sequence[ScannedModule],
                   dirs: tuple[DirId, ...] = ()) -> ModuleIndex:
        chosen: dict[str, ScannedModule] = {}
        for m in sorted(scanned, key=lambda s: _dup_rank(s.relpath)):
            chosen.setdefault(modname_from_path(m.relpath), m)
        # depmod ranks modules (and so alias matches) by modules.order.
        ranked = sorted(chosen.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        modules = {name: m.relpath for name, m in ranked}
        direct = {name: tuple(normalize(d) for d in m.depends) for name, m in ranked}
        deps = _transitive(direct, modules)
        aliases = AliasTable()
        softdeps = list(config.softdeps)
        for name, m in ranked:
            for a in m.aliases:
                aliases.add(a, name)
            softdeps.extend(parse_softdep(name, v) for v in m.softdeps)
        firmware = {name: m.firmware for name, m in ranked}
        symbols: dict[str, str] = {}
        for name, m in ranked:
            for sym in m.exports:
                symbols.setdefault(normalize(f"symbol:{sym}"), name)
        return cls(kver, kmoddir, "modinfo", modules, deps, aliases, tuple(softdeps),
                   builtin, builtin_aliases, order, config, None, firmware,
                   {"symbols": symbols}, dirs)

    # ---- queries -------------------------------------------------------------------

    def lookup(self, name: str) -> tuple[str, ...]:
        """Module names that `name` (module name, alias, modalias, `symbol:X`) stands for;
        empty if none. Built-in modules are returned too (they have no relpath)."""
        key = normalize(name)
        hits = [m for pat, m in self.config.aliases if fnmatch(pat, key)]
        if hits:
            return tuple(dict.fromkeys(hits))
        if ":" not in key and key in self.modules:
            return (key,)
        if key.startswith("symbol:"):
            sym = self.symbols().get(key)
            if sym:
                return (sym,)
        for table in (self.aliases, self.builtin_aliases):
            found = table.match(key)
            if found:
                return tuple(found)
        if key in self.builtin:
            return (key,)
        return ()

    def softdep_of(self, name: str) -> SoftDep | None:
        """The softdep rule for module `name`: like kmod, only the first matching line."""
        for sd in self.softdeps:
            if fnmatch(sd.pattern, name):
                return sd
        return None

    def is_blacklisted(self, name: str) -> bool:
        return name in self.config.blacklist

    def firmware(self, name: str) -> tuple[str, ...]:
        """`firmware=` entries of an installed module, read from its `.modinfo` once."""
        if name not in self._firmware:
            relpath = self.modules[name]
            self._firmware[name] = read_modinfo(self.host, self.kmoddir / relpath).firmware
        return self._firmware[name]

    def aliases_parsed(self) -> bool:
        """Whether modules.alias was parsed (it is parsed on first use, see _FileAliases)."""
        return bool(getattr(self.aliases, "parsed", True))

    def firmware_read(self) -> int:
        """How many modules' `firmware=` lists were read so far (a cache of this index is
        worth saving again when it grows: reading them decompresses .ko.xz files)."""
        return len(self._firmware)

    def symbols(self) -> Mapping[str, str]:
        """`symbol:NAME` -> module, from modules.symbols or the modules' exports."""
        cached = self._cache.get("symbols")
        if cached is None:
            table: dict[str, str] = {}
            if self._symbols_file is not None:
                for line in _read_index(self.host, self._symbols_file).splitlines():
                    words = line.split()
                    if len(words) >= 3 and words[0] == "alias":
                        table.setdefault(normalize(words[1]), normalize(words[2]))
            self._cache["symbols"] = cached = table
        assert isinstance(cached, dict)
        return cached

    def not_found(self, name: str) -> ModuleNotFound:
        """The error for an unknown `name`, with the closest module names."""
        import difflib

        key = normalize(name)
        pool = list(self.modules) + sorted(self.builtin)
        near = difflib.get_close_matches(key, pool, n=4, cutoff=0.6)
        return ModuleNotFound(name, self.kver, self.kmoddir, near)


_GLOB_CHARS = re.compile(r"[*?\[\\]")  # as names.literal_prefix
# Queries answered by scanning modules.alias before it is parsed whole (_FileAliases._scan):
# one scan costs a regex pass over the text, cheaper than the parse for a few short keys (a
# module or softdep name), dearer for the many modaliases of host-only discovery.
_QUICK_QUERIES = 4
_QUICK_KEY_MAX = 40
# What splitlines()/split() read as a line break or a separator and the scan would not
# (single characters: each `in` is a memchr, where one regex over the text took 50 ms).
_ODD_CHARS = "\r\x0b\x0c\x1c\x1d\x1e\x1f"


class _FileAliases(AliasTable):
    """modules.alias, parsed on first use.

    Its ~26,000 patterns cost most of an index load, and a build that names its modules
    (or a cached index that is never asked for an alias) does not need them.
    """

    def __init__(self, host: Host, path: Path) -> None:
        super().__init__()
        self._host = host
        self._path: Path | None = path
        self._quick_left = _QUICK_QUERIES
        self._text: tuple[str, str] | None = None

    def _fill(self) -> None:
        path, self._path = self._path, None
        self._text = None
        if path is None:
            return
        # AliasTable.add inlined for the common case (no brackets): this loop is most of
        # a cold build's index time.
        by_prefix = self._by_prefix
        count = self._count
        wild = _GLOB_CHARS.search
        for line in _read_index(self._host, path).splitlines():
            if not line.startswith("alias "):
                continue
            words = line.split()
            if len(words) < 3:
                continue
            pat, mod = words[1], words[2]
            pat = normalize(pat) if "[" in pat else pat.replace("-", "_")
            mod = normalize(mod) if "[" in mod else mod.replace("-", "_")
            m = wild(pat)
            prefix = pat if m is None else pat[:m.start()]
            bucket = by_prefix.get(prefix)
            if bucket is None:
                by_prefix[prefix] = bucket = []
            bucket.append((count, pat, mod))
            count += 1
        self._count = count

    @property
    def parsed(self) -> bool:
        return self._path is None

    def add(self, pattern: str, modname: str) -> None:
        self._fill()
        super().add(pattern, modname)

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def match(self, key: str) -> list[str]:
        if self._path is not None and len(key) <= _QUICK_KEY_MAX and self._quick_left > 0:
            self._quick_left -= 1
            found = self._scan(self._path, key)
            if found is not None:
                return found
        self._fill()
        return super().match(key)

    def items(self) -> Iterator[tuple[str, str]]:
        self._fill()
        return super().items()

    def _prepared(self, path: Path) -> tuple[str, str] | None:
        """The file's text and its scan form (`-` as `_`, a newline first), read once for
        the few scans of a build; None when the scan cannot be used (see _scan)."""
        if self._text is None:
            try:
                text = _read_index(self._host, path)
            except OSError:
                return None  # _fill reports it
            norm = "\n" + text.replace("-", "_")
            usable = text.isascii() and not any(c in text for c in _ODD_CHARS) \
                and "\nalias\t" not in norm and "\nalias  " not in norm
            self._text = (text, norm) if usable else ("", "")
        return self._text if self._text[1] else None

    def __getstate__(self) -> dict[str, object]:
        # The build cache pickles the index: not the text kept for scans.
        return {**self.__dict__, "_text": None}

    def _scan(self, path: Path, key: str) -> list[str] | None:
        """match() without parsing the whole file, for the few short queries of a build
        that names its drivers (ext4's softdep on crc32c): only the lines whose pattern
        starts with a prefix of `key` and a glob character there (or is `key` itself) are
        read, found by one regular-expression pass over the text with `-` read as `_`
        (which leaves offsets and the glob characters as they are): ~15 ms against ~100 ms
        for the parse on the loaded test machine. None when the text has anything the
        search would read differently from _fill (non-ASCII, other line breaks, other
        spacing after `alias`): the caller parses the file then."""
        prepared = self._prepared(path)
        if prepared is None or not key.isascii() or any(c.isspace() for c in key):
            return None
        text, norm = prepared
        # One pass: a prefix of key followed by a glob character, or key itself.
        wanted = re.compile("\\nalias (?:" + "".join(
            f"{re.escape(key[:k])}[*?\\[\\\\]|" for k in range(len(key)))
            + f"{re.escape(key)}[*?\\[\\\\ \\t])")
        starts = [m.start() for m in wanted.finditer(norm)]
        hits: list[tuple[int, str]] = []
        for i in starts:
            j = norm.find("\n", i + 1)
            words = text[i:(j - 1 if j >= 0 else len(text))].split()
            if len(words) < 3:
                continue
            pat, mod = words[1], words[2]
            pat = normalize(pat) if "[" in pat else pat.replace("-", "_")
            mod = normalize(mod) if "[" in mod else mod.replace("-", "_")
            if fnmatch(pat, key):
                hits.append((i, mod))
        return list(dict.fromkeys(m for _, m in hits))


def _dup_rank(relpath: str) -> tuple[int, str]:
    """Which copy of a module name wins: updates/ first, then extra/, then the rest."""
    top = relpath.split("/", 1)[0]
    return ({"updates": 0, "extra": 1}.get(top, 2), relpath)


def _transitive(direct: Mapping[str, tuple[str, ...]],
                modules: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """All hard deps of each module in a load order (each after its own deps).

    A dependency cycle (which depmod refuses with an error) is cut where it closes.
    """
    memo: dict[str, tuple[str, ...]] = {}

    def visit(name: str, active: set[str]) -> tuple[str, ...]:
        done = memo.get(name)
        if done is not None:
            return done
        active.add(name)
        out: dict[str, None] = {}
        for d in direct.get(name, ()):
            if d not in modules or d in active or d == name:
                continue
            for x in visit(d, active):
                out.setdefault(x)
            out.setdefault(d)
        active.discard(name)
        memo[name] = result = tuple(out)
        return result

    return {name: visit(name, set()) for name in modules}


@dataclass(frozen=True)
class _DepFile:
    """modules.dep as read once: each line's module (name, relpath) and its dependencies'
    relpaths, in file order; the modification time of it and modules.alias (the older)."""

    heads: tuple[tuple[str, str], ...]
    tails: tuple[list[str], ...]
    stamp: int

    @property
    def name_of(self) -> dict[str, str]:
        """relpath -> module name, for the listed modules."""
        return {rel: name for name, rel in self.heads}


def _read_dep(host: Host, kmoddir: Path) -> _DepFile | None:
    """modules.dep parsed, None when it or modules.alias is missing or unreadable."""
    try:
        stamp = min(host.stat(kmoddir / f).st_mtime_ns for f in ("modules.dep", "modules.alias"))
        text = _read_index(host, kmoddir / "modules.dep")
    except OSError:
        return None
    return _parse_dep(text, stamp)


def _parse_dep(text: str, stamp: int) -> _DepFile:
    heads: list[tuple[str, str]] = []
    tails: list[list[str]] = []
    # _relative changes only paths with a "/modules/" in them (old depmods' absolute ones).
    absolute = "/modules/" in text
    for line in text.splitlines():
        head, sep, tail = line.partition(":")
        if not sep:
            continue
        if absolute:
            head = _relative(head)
            tails.append([_relative(p) for p in tail.split()])
        else:
            tails.append(tail.split())
        heads.append((modname_from_path(head), head))
    return _DepFile(tuple(heads), tuple(tails), stamp)


@dataclass(frozen=True)
class DepmodDirs:
    """The directories that show whether depmod's index still describes the tree, as seen
    now: the module folder first, then each directory directly in it and each directory
    holding a listed module with its parents; and the module files directly in the folder
    (its own mtime moves with every file depmod writes there, so those are compared by
    name)."""

    dirs: tuple[DirId, ...]
    top_modules: frozenset[str]


def depmod_dirs(kmoddir: Path, listed: Iterable[str]) -> DepmodDirs | None:
    """DepmodDirs for the relpaths modules.dep lists; None when one of those directories
    is gone (a module removed with its folder) or cannot be read."""
    root = str(kmoddir)
    wanted: set[str] = set()
    for rel in listed:
        parent = rel.rpartition("/")[0]
        while parent and parent not in wanted:
            wanted.add(parent)
            parent = parent.rpartition("/")[0]
    top: set[str] = set()
    stat = os.stat
    try:
        st = stat(root)
        dirs: list[DirId] = [(root, st.st_mtime_ns, st.st_ino)]
        with os.scandir(root) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if e.name not in SKIP_DIRS:
                        wanted.add(e.name)
                elif is_module_file(e.name):
                    top.add(e.name)
        for rel in sorted(wanted):
            st = stat(f"{root}/{rel}")
            dirs.append((f"{root}/{rel}", st.st_mtime_ns, st.st_ino))
    except OSError:
        return None
    return DepmodDirs(tuple(dirs), frozenset(top))


def _index_is_current(seen: DepmodDirs, dep: _DepFile) -> bool:
    """modules.dep and modules.alias exist, no directory of `seen` but the module folder
    itself is newer than the older of them, and the module files directly in the folder
    are the listed ones (a shadowed duplicate depmod leaves out, say a top-level copy of a
    module under kernel/, does not count)."""
    stamp = dep.stamp
    if any(mtime > stamp for _, mtime, _ in seen.dirs[1:]):
        return False
    listed = {rel for _, rel in dep.heads if "/" not in rel}
    if not listed <= seen.top_modules:
        return False
    names = {name for name, _ in dep.heads}
    return all(modname_from_path(rel) in names for rel in seen.top_modules - listed)


def _read_index(host: Host, path: Path) -> str:
    """A depmod index file: regular and bounded (input_file), so a FIFO or a huge file in a
    module tree is an OSError like a missing one, never a hang."""
    return read_input_text(host.real(path), INDEX_MAX, errors="replace")


def _relative(path: str) -> str:
    """Old depmods wrote absolute paths (/lib/modules/KVER/kernel/...) in modules.dep."""
    if not path.startswith("/"):
        return path
    parts = path.split("/")
    for i in (2, 3):  # /lib/modules/KVER/... or /usr/lib/modules/KVER/...
        if len(parts) > i + 2 and parts[i] == "modules":
            return "/".join(parts[i + 2:])
    return path


def _read_builtin(host: Host, kmoddir: Path) -> frozenset[str]:
    try:
        text = _read_index(host, kmoddir / "modules.builtin")
    except OSError:
        return frozenset()
    return frozenset(modname_from_path(line.strip()) for line in text.splitlines()
                     if line.strip())


def _read_builtin_aliases(host: Host, kmoddir: Path) -> AliasTable:
    table = AliasTable()
    try:
        data = read_input(host.real(kmoddir / "modules.builtin.modinfo"), INDEX_MAX)
    except OSError:
        return table
    for rec in data.split(b"\0"):
        name, dot, rest = rec.partition(b".")
        if dot and rest.startswith(b"alias="):
            table.add(rest[6:].decode("utf-8", "replace"), normalize(name.decode()))
    return table


def _read_order(host: Host, kmoddir: Path, name_of: Mapping[str, str]) -> dict[str, int]:
    """modules.order: name -> place. `name_of`: names already worked out, by relpath."""
    try:
        text = _read_index(host, kmoddir / "modules.order")
    except OSError:
        return {}
    order: dict[str, int] = {}
    for i, line in enumerate(text.splitlines()):
        rel = line.strip()
        if rel:
            order.setdefault(name_of.get(rel) or modname_from_path(rel), i)
    return order


__all__ = ["IndexNotCurrent", "ModinfoError", "ModuleDirMissing", "ModuleIndex", "ModuleNotFound"]
