"""Reading one ELF file: only what the dynamic loader looks at.

The ELF header (class, byte order, machine, type), PT_INTERP, the dynamic section
(DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FLAGS_1) and the systemd `.note.dlopen`
notes (owner "FDO", type 0x407c0c0a, a JSON array), unpacked with `struct`. Parsed objects
are cached per (device, inode, size, mtime) for the life of the process, because one build
asks about libc hundreds of times.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mkkdumprd import json_input

ELF_MAGIC = b"\x7fELF"
NOTE_DLOPEN_OWNER = "FDO"
NOTE_DLOPEN_TYPE = 0x407C0C0A
DF_1_NODEFLIB = 0x800


class NotElf(Exception):
    """The file does not start with the ELF magic, or its headers are unreadable."""


@dataclass(frozen=True)
class DlopenNote:
    """One element of a `.note.dlopen` JSON array (systemd ELF_DLOPEN_METADATA)."""

    feature: str
    priority: str
    sonames: tuple[str, ...]


@dataclass(frozen=True)
class ElfObject:
    """What the library closure needs of one ELF file's headers and dynamic section."""

    elf_class: int  # 32 or 64
    little_endian: bool
    machine: str  # pyelftools' name, e.g. "EM_X86_64"
    elf_type: str  # "ET_EXEC", "ET_DYN", ...
    osabi: str
    interp: str | None
    dynamic: bool  # has a PT_DYNAMIC segment
    needed: tuple[str, ...]
    soname: str | None
    rpath: tuple[str, ...] | None  # None when absent (not the same as empty)
    runpath: tuple[str, ...] | None
    nodeflib: bool
    dlopen: tuple[DlopenNote, ...]


@dataclass(frozen=True)
class ElfIdent:
    """The first bytes ld.so checks before anything else (open_verify)."""

    elf_class: int
    little_endian: bool
    machine: str


# pyelftools' names for the values builds meet (tests/unit/test_elf_objects.py checks them
# against its tables); any other value is named from pyelftools' tables, imported then:
# importing them (its construct library) was ~15 ms of a cold build.
_COMMON_MACHINES = {3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390",
                    40: "EM_ARM", 62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV",
                    258: "EM_LOONGARCH"}
_COMMON_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_COMMON_OSABIS = {0: "ELFOSABI_SYSV", 3: "ELFOSABI_LINUX"}


@functools.cache
def _pyelftools_names() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """(machine, type, osabi) value -> name, from pyelftools' enums."""
    from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_EI_OSABI

    return ({v: k for k, v in ENUM_E_MACHINE.items()
             if isinstance(v, int) and k.startswith("EM_")},
            {v: k for k, v in ENUM_E_TYPE.items() if isinstance(v, int)},
            {v: k for k, v in ENUM_EI_OSABI.items() if isinstance(v, int)})


def machine_name(value: int) -> str:
    """pyelftools' name of an e_machine value ("EM_X86_64"), `EM_<n>` if it has none."""
    name = _COMMON_MACHINES.get(value)
    return name if name is not None else _pyelftools_names()[0].get(value, f"EM_{value}")


def _type_name(value: int) -> str:
    name = _COMMON_TYPES.get(value)
    return name if name is not None else _pyelftools_names()[1].get(value, f"ET_{value}")


def _osabi_name(value: int) -> str:
    name = _COMMON_OSABIS.get(value)
    return name if name is not None else _pyelftools_names()[2].get(value,
                                                                    f"ELFOSABI_{value}")


_CACHE: dict[tuple[int, int, int, int], ElfObject] = {}


def read_ident(path: str | Path) -> ElfIdent:
    """Class, byte order and machine from the ELF header alone; NotElf if not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    return ident_of(head, str(path))


def ident_of(head: bytes, what: str) -> ElfIdent:
    """The same from the first 20 bytes of a file (`what` names it in the error)."""
    if len(head) < 20 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise NotElf(f"{what} is not an ELF file")
    little = head[5] == 1
    (machine,) = struct.unpack_from("<H" if little else ">H", head, 18)
    return ElfIdent(32 if head[4] == 1 else 64, little, machine_name(machine))


def known() -> dict[tuple[int, int, int, int], ElfObject]:
    """The parsed objects of this process, by (device, inode, size, mtime_ns)."""
    return _CACHE


def remember(objects: dict[tuple[int, int, int, int], ElfObject]) -> None:
    """Add objects parsed earlier (by another run): a build cache seeds them here."""
    for key, obj in objects.items():
        if isinstance(obj, ElfObject):
            _CACHE.setdefault(key, obj)


def read_elf(path: str | Path) -> ElfObject:
    """Parse `path` (a real path on this machine); raise NotElf if it is not ELF."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    obj = _CACHE.get(key)
    if obj is None:
        obj = _parse(path)
        _CACHE[key] = obj
    return obj


def _parse(path: str | Path) -> ElfObject:
    with open(path, "rb") as f:
        try:
            return _Reader(f, str(path)).parse()
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise NotElf(f"{path} has broken ELF headers ({exc})") from exc


_PT_LOAD, _PT_DYNAMIC, _PT_INTERP, _PT_NOTE = 1, 2, 3, 4
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME, _DT_RPATH = 0, 1, 5, 10, 14, 15
_DT_RUNPATH, _DT_FLAGS_1 = 29, 0x6FFFFFFB
_PN_XNUM = 0xFFFF


class _Reader:
    """Just the ELF header, program headers, dynamic segment and notes.

    pyelftools' ELFFile builds its whole struct model per file (about 20 ms each, most
    of a closure's time); the loader needs only these few fixed-layout records, so they
    are unpacked directly, with pyelftools' tables naming the values.
    """

    def __init__(self, f: BinaryIO, name: str) -> None:
        self.f = f
        self.name = name

    def read(self, off: int, size: int) -> bytes:
        self.f.seek(off)
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError(f"file ends before offset {off + size}")
        return data

    def parse(self) -> ElfObject:
        ident = self.read(0, 16)
        if ident[:4] != ELF_MAGIC or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise NotElf(f"{self.name} is not an ELF file")
        is64 = ident[4] == 2
        bo = "<" if ident[5] == 1 else ">"
        if is64:
            (e_type, e_machine, _v, _entry, phoff, shoff, _fl, _ehs, phentsize, phnum,
             shentsize, _shnum, _shstrndx) = struct.unpack(bo + "HHIQQQIHHHHHH",
                                                           self.read(16, 48))
            ph = struct.Struct(bo + "IIQQQQQQ")
        else:
            (e_type, e_machine, _v, _entry, phoff, shoff, _fl, _ehs, phentsize, phnum,
             shentsize, _shnum, _shstrndx) = struct.unpack(bo + "HHIIIIIHHHHHH",
                                                           self.read(16, 36))
            ph = struct.Struct(bo + "IIIIIIII")
        if phnum == _PN_XNUM and shoff:
            # More than 0xfffe program headers: the count lives in section 0's sh_info.
            sh0 = self.read(shoff, shentsize)
            phnum = struct.unpack_from(bo + "I", sh0, 44 if is64 else 28)[0]
        # (type, offset, vaddr, filesz)
        segs: list[tuple[int, int, int, int]] = []
        if phnum:
            if phentsize < ph.size:
                raise ValueError(f"program header entries of {phentsize} bytes")
            table = self.read(phoff, phentsize * phnum)
            for i in range(phnum):
                v = ph.unpack_from(table, i * phentsize)
                if is64:
                    segs.append((v[0], v[2], v[3], v[5]))
                else:
                    segs.append((v[0], v[1], v[2], v[4]))
        interp: str | None = None
        dyn: tuple[int, int] | None = None
        notes: list[DlopenNote] = []
        for ptype, off, _vaddr, filesz in segs:
            if ptype == _PT_INTERP:
                interp = self.read(off, filesz).split(b"\0", 1)[0].decode()
            elif ptype == _PT_DYNAMIC:
                dyn = (off, filesz)
            elif ptype == _PT_NOTE and filesz:
                notes.extend(_dlopen_notes(self.read(off, filesz), bo == "<"))
        fields = _Dynamic()
        if dyn is not None:
            self._dynamic(dyn, segs, is64, bo, fields)
        return ElfObject(
            elf_class=64 if is64 else 32,
            little_endian=bo == "<",
            machine=machine_name(e_machine),
            elf_type=_type_name(e_type),
            osabi=_osabi_name(ident[7]),
            interp=interp,
            dynamic=dyn is not None,
            needed=tuple(fields.needed),
            soname=fields.soname,
            rpath=fields.rpath,
            runpath=fields.runpath,
            nodeflib=bool(fields.flags_1 & DF_1_NODEFLIB),
            dlopen=tuple(notes),
        )

    def _dynamic(self, dyn: tuple[int, int], segs: list[tuple[int, int, int, int]],
                 is64: bool, bo: str, out: _Dynamic) -> None:
        entry = struct.Struct(bo + ("qQ" if is64 else "iI"))
        raw = self.read(dyn[0], dyn[1] - dyn[1] % entry.size)
        needed: list[int] = []
        strtab = strsz = 0
        soname = rpath = runpath = None
        for tag, val in entry.iter_unpack(raw):
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                needed.append(val)
            elif tag == _DT_STRTAB:
                strtab = val
            elif tag == _DT_STRSZ:
                strsz = val
            elif tag == _DT_SONAME:
                soname = val
            elif tag == _DT_RPATH:
                rpath = val
            elif tag == _DT_RUNPATH:
                runpath = val
            elif tag == _DT_FLAGS_1:
                out.flags_1 = val
        if not (needed or soname is not None or rpath is not None or runpath is not None):
            return
        # DT_STRTAB is an address: map it to a file offset through the PT_LOAD segments.
        stroff = next((off + strtab - vaddr for ptype, off, vaddr, filesz in segs
                       if ptype == _PT_LOAD and vaddr <= strtab < vaddr + filesz), None)
        if stroff is None or not strsz:
            raise ValueError("DT_STRTAB is outside every loadable segment")
        strings = self.read(stroff, strsz)

        def s(i: int) -> str:
            end = strings.find(b"\0", i)
            if i >= len(strings) or end < 0:
                raise ValueError(f"string offset {i} outside DT_STRTAB")
            return strings[i:end].decode("utf-8", "surrogateescape")

        out.needed = [s(i) for i in needed]
        out.soname = s(soname) if soname is not None else None
        out.rpath = tuple(_split_path(s(rpath))) if rpath is not None else None
        out.runpath = tuple(_split_path(s(runpath))) if runpath is not None else None


@dataclass
class _Dynamic:
    """The dynamic section's entries read so far."""

    needed: list[str] = field(default_factory=list)
    soname: str | None = None
    rpath: tuple[str, ...] | None = None
    runpath: tuple[str, ...] | None = None
    flags_1: int = 0


def _split_path(value: str) -> list[str]:
    # ld.so splits on ':' and drops empty elements (fillin_rpath skips them).
    return [p for p in value.split(":") if p]


def _dlopen_notes(data: bytes, little: bool) -> list[DlopenNote]:
    """The `.note.dlopen` entries in one PT_NOTE segment's bytes."""
    out: list[DlopenNote] = []
    fmt = "<III" if little else ">III"
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(fmt, data, off)
        off += 12
        name = data[off:off + namesz].rstrip(b"\0")
        off += (namesz + 3) & ~3
        desc = data[off:off + descsz]
        off += (descsz + 3) & ~3
        if ntype != NOTE_DLOPEN_TYPE or name != NOTE_DLOPEN_OWNER.encode():
            continue
        out.extend(parse_dlopen_json(desc.rstrip(b"\0")))
    return out


def parse_dlopen_json(raw: bytes) -> list[DlopenNote]:
    """Decode one note's JSON; a malformed note is ignored as systemd's tools do."""
    try:
        items = json_input.loads(raw)
    except ValueError:   # not UTF-8, not JSON, or nested too deep
        return []
    if not isinstance(items, list):
        return []
    out: list[DlopenNote] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        names = item.get("soname", [])
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list):
            continue
        out.append(DlopenNote(
            feature=str(item.get("feature", "")),
            priority=str(item.get("priority", "recommended")),
            sonames=tuple(str(n) for n in names if isinstance(n, str)),
        ))
    return out
