"""The shared-library closure of binaries, following glibc's ld.so rule by rule.

Each root is treated as its own process, as `ld.so` would load it (elf/dl-load.c
_dl_map_object, elf/dl-deps.c): the interpreter from PT_INTERP, then DT_NEEDED breadth
first. A name already loaded (as requested name, path or DT_SONAME) or a file already
loaded is reused, so the first object to pull a library decides where it comes from. A
name without '/' is searched in this order:

1. unless the requesting object has DT_RUNPATH: the DT_RPATH of the requesting object,
   of the object that loaded it, and so on up to the executable (an object's DT_RPATH
   does not count when it also has DT_RUNPATH);
2. the requesting object's own DT_RUNPATH (never inherited);
3. /etc/ld.so.cache (entries for the wrong ABI skipped); when the view has no cache at
   all, the ld.so.conf directories instead, as ldconfig would have listed them;
4. the default directories (unless DF_1_NODEFLIB).

Search directories expand `$ORIGIN`, `$LIB` and `$PLATFORM`, and each is tried with its
supported glibc-hwcaps subdirectories first. A candidate of the wrong ELF class or machine
is skipped and the search goes on; one that is not ELF at all is an error, as for ld.so.
Everything is looked up inside the Host (the host or a --sysroot).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO, TypeVar

from mkkdumprd.elf.ldcache import CacheFormatError, LdCache, parse_ld_cache
from mkkdumprd.elf.ldconf import ld_so_conf_dirs
from mkkdumprd.elf.objects import ElfIdent, ElfObject, NotElf, read_elf, read_ident
from mkkdumprd.elf.platform import LdsoPlatform, ldso_platform
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host

LD_SO_CACHE = "/etc/ld.so.cache"
_MAX_SYMLINKS = 40
_MAX_SCRIPT_DEPTH = 4  # binfmt_script nesting the kernel allows
_DST = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")
_DLOPEN_PRIORITIES = ("required", "recommended")

# --arch names and e_machine names both accepted for `machine`.
_ARCH_MACHINES: dict[str, tuple[str, int]] = {
    "x86_64": ("EM_X86_64", 64), "amd64": ("EM_X86_64", 64),
    "i386": ("EM_386", 32), "i686": ("EM_386", 32),
    "aarch64": ("EM_AARCH64", 64), "arm64": ("EM_AARCH64", 64),
    "arm": ("EM_ARM", 32), "armhf": ("EM_ARM", 32),
    "ppc64le": ("EM_PPC64", 64), "ppc64el": ("EM_PPC64", 64), "ppc64": ("EM_PPC64", 64),
    "s390x": ("EM_S390", 64), "riscv64": ("EM_RISCV", 64),
    "loongarch64": ("EM_LOONGARCH", 64),
}


class ElfError(UsageError):
    """A binary or one of its libraries cannot be found or is not usable."""


@dataclass(frozen=True)
class Closure:
    """Roots and every object the loader opens for them, interpreter included.

    `objects` are absolute paths inside the view as the loader opens them (e.g.
    /lib64/ld-linux-x86-64.so.2, /lib/x86_64-linux-gnu/libc.so.6), in breadth-first
    load order, without duplicates (by real path) and without the roots themselves.
    """

    roots: tuple[PurePosixPath, ...]
    objects: tuple[PurePosixPath, ...]


def resolve_closure(files: Sequence[str | PurePosixPath], view: Host, *,
                    dlopen: Sequence[str] = (), machine: str | None = None) -> Closure:
    resolver = Resolver(view, machine)
    roots = tuple(resolver.locate(str(f)) for f in files)
    seen = {resolver.real(r) for r in roots}
    objects: list[PurePosixPath] = []
    for root in roots:
        for obj in resolver.objects_of(root, dlopen):
            real = resolver.real(obj)
            if real not in seen:
                seen.add(real)
                objects.append(obj)
    return Closure(roots, tuple(objects))


@dataclass(eq=False)
class _Map:
    """One loaded object: glibc's struct link_map, reduced to what lookups need."""

    path: PurePosixPath  # l_name: the path it was opened as
    real: PurePosixPath
    elf: ElfObject
    names: set[str]
    loader: _Map | None
    origin: str

    @property
    def rpath(self) -> tuple[str, ...] | None:
        # get_dynamic_info drops DT_RPATH when DT_RUNPATH is present.
        return None if self.elf.runpath is not None else self.elf.rpath


@dataclass
class _Process:
    """One program as ld.so would load it: its main map, platform and maps so far."""

    main: _Map
    platform: LdsoPlatform
    maps: list[_Map] = field(default_factory=list)


class Resolver:
    """Lookups against one view, with memoised path resolution and parsed objects.

    Reusable across many roots (the benchmark resolves all of /usr/bin with one).
    """

    def __init__(self, view: Host, machine: str | None = None) -> None:
        self.view = view
        self.forced = _parse_machine(machine) if machine else None
        self.expected: tuple[str, int] | None = None  # set by the first ELF root
        self._real: dict[str, PurePosixPath] = {}
        self._resolved: dict[str, str] = {}
        self._root = str(view.root).rstrip("/")  # "" for the live system
        self._elf: dict[PurePosixPath, ElfObject | None] = {}
        self._ident: dict[PurePosixPath, ElfIdent | None] = {}
        self._platforms: dict[tuple[str, int, str | None], LdsoPlatform] = {}
        self._cache: LdCache | None = None
        self._cache_loaded = False
        self._conf_dirs: tuple[PurePosixPath, ...] | None = None
        self._closures: dict[tuple[PurePosixPath, tuple[str, ...]], list[PurePosixPath]] = {}
        # Objects found through ld.so.cache outside the default directories: the image's
        # loader finds those only if the image carries the cache too.
        self.needs_cache: set[PurePosixPath] = set()
        # Candidates skipped for being built for another class/machine, for the messages.
        self.foreign: dict[PurePosixPath, str] = {}
        self._system: dict[tuple[int, str, bool],
                           tuple[tuple[PurePosixPath, ElfObject] | None, list[str]]] = {}

    @property
    def where(self) -> str:
        """' in sysroot DIR' for messages, nothing for the live system."""
        return "" if self.view.is_live else f" in sysroot {self.view.root}"

    # -- view access -------------------------------------------------------------------

    def real(self, p: str | PurePosixPath) -> PurePosixPath:
        """Host.resolve, memoised per directory prefix (most libraries share a few)."""
        key = str(p)
        r = self._real.get(key)
        if r is None:
            r = PurePosixPath(self._resolve(key if key.startswith("/") else "/" + key, 0))
            self._real[key] = r
        return r

    def _resolve(self, path: str, hops: int) -> str:
        done = self._resolved.get(path)
        if done is not None:
            return done
        parent, _, name = path.rstrip("/").rpartition("/")
        base = self._resolve(parent, hops) if parent else "/"
        if name in ("", "."):
            out = base
        elif name == "..":
            out = base.rpartition("/")[0] or "/"
        else:
            cand = base.rstrip("/") + "/" + name
            try:
                target = os.readlink(self._root + cand)
            except OSError:  # not a symlink, or missing: kept as is
                out = cand
            else:
                if hops >= _MAX_SYMLINKS:
                    raise ElfError(f"too many levels of symbolic links at {cand}{self.where}")
                out = self._resolve(target if target.startswith("/")
                                    else base.rstrip("/") + "/" + target, hops + 1)
        self._resolved[path] = out
        return out

    def host(self, real: PurePosixPath) -> str:
        """The path on this machine of a resolved view path."""
        return self._root + str(real)

    def elf(self, p: str | PurePosixPath) -> ElfObject | None:
        """The parsed object at view path `p`; None if there is no regular file there."""
        real = self.real(p)
        if real in self._elf:
            return self._elf[real]
        obj = _parse_elf(p, self.host(real), read_elf)
        self._elf[real] = obj
        return obj

    def ident(self, p: str | PurePosixPath) -> ElfIdent | None:
        """The ELF header of view path `p`; None if there is no regular file there."""
        real = self.real(p)
        if real in self._ident:
            return self._ident[real]
        ident = _parse_elf(p, self.host(real), read_ident)
        self._ident[real] = ident
        return ident

    def ld_cache(self) -> LdCache | None:
        if not self._cache_loaded:
            self._cache_loaded = True
            try:
                with open(self.host(self.real(LD_SO_CACHE)), "rb") as f:
                    self._cache = _parsed_ld_cache(f)
            except FileNotFoundError:
                self._cache = None
            except (OSError, CacheFormatError):
                # ld.so ignores an unreadable or corrupt cache and searches on.
                self._cache = None
        return self._cache

    def conf_dirs(self) -> tuple[PurePosixPath, ...]:
        if self._conf_dirs is None:
            self._conf_dirs = ld_so_conf_dirs(self.view)
        return self._conf_dirs

    def platform(self, elf: ElfObject, interp: str | None) -> LdsoPlatform:
        machine, cls = self.forced or (elf.machine, elf.elf_class)
        key = (machine, cls, interp)
        t = self._platforms.get(key)
        if t is None:
            t = ldso_platform(self.view, machine, cls, interp)
            self._platforms[key] = t
        return t

    # -- roots -------------------------------------------------------------------------

    def locate(self, name: str) -> PurePosixPath:
        """A root as given: an absolute path, or a bare name looked up on the view's PATH."""
        if "/" in name:
            return PurePosixPath("/", name)
        found = self.view.which(name)
        if found is None:
            raise ElfError(f"'{name}' is not on the PATH{self.where}; install it or "
                           "give its full path")
        return found

    def objects_of(self, root: PurePosixPath, dlopen: Sequence[str] = (),
                   depth: int = 0) -> list[PurePosixPath]:
        """Everything one root makes the loader open (a script: its interpreter chain)."""
        key = (root, tuple(dlopen))
        done = self._closures.get(key)
        if done is not None:
            return done
        host = self.host(self.real(root))
        if not os.path.exists(host):
            raise ElfError(f"{root} does not exist{self.where}; check the path "
                           "or install the package that provides it")
        if not os.path.isfile(host):
            raise ElfError(f"{root} is not a regular file")
        head = self._head(root)
        if head.startswith(b"#!"):
            out = self._script(root, head, dlopen, depth)
        elif head.startswith(b"\x7fELF"):
            out = [m.path for m in self._run(root, dlopen).maps]
        else:
            raise ElfError(f"{root} is neither an ELF binary nor a #! script; the image "
                           "cannot run it")
        self._closures[key] = out
        return out

    def _head(self, p: PurePosixPath) -> bytes:
        try:
            with open(self.host(self.real(p)), "rb") as f:
                return f.read(256)
        except OSError as exc:
            raise ElfError(f"cannot read {p}: {exc.strerror}") from exc

    def _script(self, root: PurePosixPath, head: bytes, dlopen: Sequence[str],
                depth: int) -> list[PurePosixPath]:
        if depth >= _MAX_SCRIPT_DEPTH:
            raise ElfError(f"{root}: too many levels of #! interpreters")
        line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        words = line.split()
        if not words:
            raise ElfError(f"{root} starts with '#!' but names no interpreter")
        interp = PurePosixPath(words[0])
        chain = [interp]
        if interp.name == "env":
            prog = next((w for w in words[1:] if not w.startswith("-") and "=" not in w),
                        None)
            if prog is not None:
                found = self.view.which(prog)
                if found is None:
                    raise ElfError(f"{root} runs '{prog}' through env, but no '{prog}' "
                                   f"is on the PATH{self.where}")
                chain.append(found)
        out: list[PurePosixPath] = []
        for exe in chain:
            if not os.path.isfile(self.host(self.real(exe))):
                raise ElfError(f"{root} is a script for {exe}, which does not exist"
                               f"{self.where}; install it or fix the #! line")
            out.append(exe)
            out.extend(self.objects_of(exe, dlopen, depth + 1))
        return out

    # -- one process -------------------------------------------------------------------

    def _run(self, root: PurePosixPath, dlopen: Sequence[str]) -> _Process:
        elf = self.elf(root)
        assert elf is not None
        real = self.real(root)
        want = self.forced or self.expected
        if want is None:
            self.expected = (elf.machine, elf.elf_class)
        elif (elf.machine, elf.elf_class) != want:
            how = "as requested (--arch)" if self.forced else "like the first binary"
            raise ElfError(f"{root}{self.where} is a {elf.elf_class}-bit {elf.machine} "
                           f"binary, not {want[1]}-bit {want[0]} {how}; all binaries of an "
                           "image must be built for its architecture: use a --sysroot of "
                           "that architecture or give the matching --arch")
        main = _Map(root, real, elf, {str(root)}, None, str(real.parent))
        if elf.soname:
            main.names.add(elf.soname)
        proc = _Process(main, self.platform(elf, elf.interp))
        if elf.interp:
            interp = PurePosixPath(elf.interp)
            ielf = self._verify(proc, interp)
            if ielf is None:
                note = self._foreign_note(str(interp), proc.platform)
                raise ElfError(f"{root} needs the interpreter {interp}, which is missing"
                               f"{self.where}{note or ' or built for another architecture'}")
            rtld = _Map(interp, self.real(interp), ielf, {str(interp)}, None,
                        str(interp.parent))
            if ielf.soname:
                rtld.names.add(ielf.soname)
            proc.maps.append(rtld)
        self._deps(proc, [main])
        self._dlopen(proc, main, dlopen)
        return proc

    def _deps(self, proc: _Process, queue: list[_Map]) -> None:
        """_dl_map_object_deps: breadth-first over DT_NEEDED."""
        i = 0
        while i < len(queue):
            m = queue[i]
            i += 1
            for name in m.elf.needed:
                dep, new = self._map_object(proc, m, name, required=True)
                if new and dep is not None:
                    queue.append(dep)

    def _dlopen(self, proc: _Process, main: _Map, names: Sequence[str]) -> None:
        for name in names:
            dep, new = self._map_object(proc, main, name, required=True, why="dlopen")
            if new and dep is not None:
                self._deps(proc, [dep])
        # .note.dlopen of every loaded object, including objects these notes pull in.
        i = 0
        while i <= len(proc.maps):
            m = main if i == 0 else proc.maps[i - 1]
            i += 1
            for note in m.elf.dlopen:
                if note.priority in _DLOPEN_PRIORITIES:
                    self._note(proc, m, note.sonames, note.priority == "required",
                               note.feature)

    def _note(self, proc: _Process, m: _Map, sonames: tuple[str, ...], required: bool,
              feature: str) -> None:
        for k, soname in enumerate(sonames):
            last = k == len(sonames) - 1
            dep, new = self._map_object(proc, m, soname, required=required and last,
                                        why=f".note.dlopen feature '{feature}'")
            if dep is not None:
                if new:
                    self._deps(proc, [dep])
                return

    def _map_object(self, proc: _Process, loader: _Map, name: str, *, required: bool,
                    why: str = "DT_NEEDED") -> tuple[_Map | None, bool]:
        """_dl_map_object: (the object, whether it is newly loaded)."""
        for m in (proc.main, *proc.maps):
            if name in m.names:
                return m, False
        searched: list[str] = []
        if "/" in name:
            path = self._expand_one(name, loader, proc.platform)
            found = (path, self._verify(proc, path)) if path else None
            if found and found[1] is None:
                found = None
            searched.append(name)
        else:
            found = self._search(proc, loader, name, searched)
        if found is None:
            if not required:
                return None, False
            raise ElfError(
                f"{proc.main.path}: cannot find {name} ({why} of {loader.path}); searched "
                f"{', '.join(searched) or 'nothing'}{self.where}"
                f"{self._foreign_note(name, proc.platform)}; install the "
                "library or fix the binary's RPATH/RUNPATH")
        path, elf = found
        assert elf is not None
        real = self.real(path)
        for m in (proc.main, *proc.maps):
            if m.real == real:  # same file under another name: _dl_file_id_match_p
                m.names.add(name)
                return m, False
        new = _Map(path, real, elf, {name, str(path)}, loader, str(path.parent))
        if elf.soname:
            new.names.add(elf.soname)
        proc.maps.append(new)
        return new, True

    def _search(self, proc: _Process, loader: _Map, name: str, searched: list[str]
                ) -> tuple[PurePosixPath, ElfObject] | None:
        t = proc.platform
        if loader.elf.runpath is None:
            did_main = False
            chain: _Map | None = loader
            while chain is not None:
                if chain.rpath is not None:
                    hit = self._in_dirs(proc, self._expand(chain.rpath, chain, t), name,
                                        searched, "RPATH")
                    if hit:
                        return hit
                    did_main |= chain is proc.main
                chain = chain.loader
            if not did_main and proc.main.rpath is not None:
                hit = self._in_dirs(proc, self._expand(proc.main.rpath, proc.main, t), name,
                                    searched, "RPATH")
                if hit:
                    return hit
        if loader.elf.runpath is not None:
            hit = self._in_dirs(proc, self._expand(loader.elf.runpath, loader, t), name,
                                searched, "RUNPATH")
            if hit:
                return hit
        nodeflib = loader.elf.nodeflib
        # The rest depends only on the name and the platform: memoised, since every binary
        # asks for libc.so.6 again.
        key = (id(t), name, nodeflib)
        memo = self._system.get(key)
        if memo is None:
            sys_searched: list[str] = []
            memo = (self._search_system(proc, name, nodeflib, sys_searched), sys_searched)
            self._system[key] = memo
        searched.extend(memo[1])
        return memo[0]

    def _search_system(self, proc: _Process, name: str, nodeflib: bool, searched: list[str]
                       ) -> tuple[PurePosixPath, ElfObject] | None:
        """ld.so.cache (or, without one, the ld.so.conf directories), then the defaults."""
        t = proc.platform
        cache = self.ld_cache()
        if cache is not None:
            searched.append(LD_SO_CACHE)
            cached = cache.lookup(name, t.cache_flags, t.hwcaps)
            if cached is not None and not (
                    nodeflib and PurePosixPath(cached).parent in t.default_dirs):
                path = PurePosixPath(cached)
                elf = self._verify(proc, path)
                if elf is not None:
                    if path.parent not in t.default_dirs:
                        self.needs_cache.add(path)
                    return path, elf
        else:
            hit = self._in_dirs(proc, list(self.conf_dirs()), name, searched, "ld.so.conf")
            if hit:
                return hit
        if not nodeflib:
            return self._in_dirs(proc, list(t.default_dirs), name, searched, "")
        return None

    def _in_dirs(self, proc: _Process, dirs: list[PurePosixPath], name: str,
                 searched: list[str], label: str) -> tuple[PurePosixPath, ElfObject] | None:
        """open_path: each directory, its glibc-hwcaps (and legacy) subdirectories first."""
        subs = [f"glibc-hwcaps/{h}" for h in proc.platform.hwcaps]
        subs += list(dict.fromkeys(proc.platform.legacy_subdirs))
        for d in dirs:
            searched.append(f"{d} ({label})" if label else str(d))
            for sub in subs:
                cand = d / sub / name
                elf = self._verify(proc, cand)
                if elf is not None:
                    return cand, elf
            cand = d / name
            elf = self._verify(proc, cand)
            if elf is not None:
                return cand, elf
        return None

    def _verify(self, proc: _Process, path: PurePosixPath) -> ElfObject | None:
        """open_verify: None for a missing file or one built for another class/machine."""
        ident = self.ident(path)
        if ident is None:
            return None
        t = proc.platform
        if ident.elf_class != t.elf_class or ident.machine != t.machine:
            self.foreign[path] = f"{ident.elf_class}-bit {ident.machine}"
            return None
        if ident.little_endian != proc.main.elf.little_endian:
            raise ElfError(f"{path} has the wrong byte order for {proc.main.path}")
        return self.elf(path)

    def _foreign_note(self, name: str, t: LdsoPlatform) -> str:
        """'; /lib/x/libfoo.so.1 is a 64-bit EM_X86_64 file, not ...' for skipped files."""
        hits = [f"{p} is a {what} file" for p, what in self.foreign.items()
                if p.name == PurePosixPath(name).name]
        if not hits:
            return ""
        return (f"; {', '.join(hits[:3])}, not {t.elf_class}-bit {t.machine} (a library of "
                "another architecture)")

    def _expand(self, dirs: tuple[str, ...], owner: _Map, t: LdsoPlatform) -> list[PurePosixPath]:
        out: list[PurePosixPath] = []
        for d in dirs:
            p = self._expand_one(d, owner, t)
            if p is not None and p not in out:
                out.append(p)
        return out

    def _expand_one(self, value: str, owner: _Map, t: LdsoPlatform) -> PurePosixPath | None:
        """_dl_dst_substitute; an element whose DST has no value is dropped."""
        failed = False

        def repl(m: re.Match[str]) -> str:
            nonlocal failed
            which = m.group(1) or m.group(2)
            if which == "ORIGIN":
                return owner.origin
            if which == "LIB":
                return t.lib
            if not t.platform:
                failed = True
            return t.platform

        expanded = _DST.sub(repl, value)
        if failed or not expanded:
            return None
        # A relative element is relative to the working directory: / in the image.
        return PurePosixPath("/", expanded)


def arch_of(view: Host) -> str | None:
    """The --arch name of a root, from its shell (or busybox): None when it has neither.

    Cross builds default to the sysroot's architecture rather than this machine's.
    """
    names = {v: k for k, v in reversed(list(_ARCH_MACHINES.items()))}
    for tool in ("sh", "busybox"):
        p = view.which(tool, ("/bin", "/usr/bin", "/sbin", "/usr/sbin"))
        if p is None:
            continue
        try:
            ident = read_ident(view.path(view.resolve(p)))
        except (NotElf, OSError):
            continue  # a script or unreadable: try the next
        return names.get((ident.machine, ident.elf_class))
    return None


def parse_machine(machine: str) -> tuple[str, int]:
    """(e_machine name, ELF class) for an --arch name (aarch64, arm64 ...) or EM_* name."""
    return _parse_machine(machine)


def _parse_machine(machine: str) -> tuple[str, int]:
    if machine in _ARCH_MACHINES:
        return _ARCH_MACHINES[machine]
    for em, cls in _ARCH_MACHINES.values():
        if em == machine:
            return em, cls
    raise ElfError(f"unknown machine '{machine}'; use one of "
                   f"{', '.join(sorted(_ARCH_MACHINES))}")


_Parsed = TypeVar("_Parsed")


# ld.so.cache parsed once per process for each content: a build resolves the closures of
# several binaries (busybox, makedumpfile, the kdump tools) from the same cache.
_LD_CACHES: dict[bytes, LdCache] = {}


def _parsed_ld_cache(f: BinaryIO) -> LdCache:
    data = f.read()
    found = _LD_CACHES.get(data)
    if found is None:
        found = _LD_CACHES[data] = parse_ld_cache(data)
    return found


def _parse_elf(p: str | PurePosixPath, host: str,
               reader: Callable[[str], _Parsed]) -> _Parsed | None:
    """`reader` applied to the file at `host` (view path `p`); None when no regular file is
    there. A file that is there but unreadable or not ELF is an ElfError naming `p`."""
    if not os.path.isfile(host):
        return None
    try:
        return reader(host)
    except NotElf as exc:
        raise ElfError(f"{p} is not an ELF file ({exc}); the dynamic loader "
                       "cannot use it") from exc
    except OSError as exc:
        raise ElfError(f"cannot read {p}: {exc.strerror}") from exc
