"""Reading one ELF file: only what the dynamic loader looks at.

The ELF header (class, byte order, machine, type), PT_INTERP, the dynamic section
(DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FLAGS_1) and the systemd `.note.dlopen`
notes (owner "FDO", type 0x407c0c0a, a JSON array). Parsed objects are cached per
(device, inode, size, mtime) for the life of the process, because one build asks about
libc hundreds of times.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE

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


_MACHINE_NAMES: dict[int, str] = {
    v: k for k, v in ENUM_E_MACHINE.items() if isinstance(v, int) and k.startswith("EM_")
}
_CACHE: dict[tuple[int, int, int, int], ElfObject] = {}


def read_ident(path: Path) -> ElfIdent:
    """Class, byte order and machine from the ELF header alone; NotElf if not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise NotElf(f"{path} is not an ELF file")
    little = head[5] == 1
    (machine,) = struct.unpack_from("<H" if little else ">H", head, 18)
    return ElfIdent(32 if head[4] == 1 else 64, little,
                    _MACHINE_NAMES.get(machine, f"EM_{machine}"))


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


def read_elf(path: Path) -> ElfObject:
    """Parse `path` (a real path on this machine); raise NotElf if it is not ELF."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    obj = _CACHE.get(key)
    if obj is None:
        obj = _parse(path)
        _CACHE[key] = obj
    return obj


def _parse(path: Path) -> ElfObject:
    with open(path, "rb") as f:
        if f.read(4) != ELF_MAGIC:
            raise NotElf(f"{path} is not an ELF file")
        f.seek(0)
        try:
            return _parse_stream(f)
        except (ELFError, struct.error, ValueError, UnicodeDecodeError) as exc:
            raise NotElf(f"{path} has broken ELF headers ({exc})") from exc
        except Exception as exc:  # pyelftools' construct raises its own error types
            if type(exc).__module__.startswith("elftools"):
                raise NotElf(f"{path} has broken ELF headers ({exc})") from exc
            raise


def _parse_stream(f: Any) -> ElfObject:
    elf = ELFFile(f)
    hdr = elf.header
    interp: str | None = None
    dynamic = False
    needed: list[str] = []
    soname: str | None = None
    rpath: tuple[str, ...] | None = None
    runpath: tuple[str, ...] | None = None
    flags_1 = 0
    notes: list[DlopenNote] = []
    seg: Any  # pyelftools' typing has no per-segment-type classes
    for seg in elf.iter_segments():
        ptype = seg.header.p_type
        if ptype == "PT_INTERP":
            interp = seg.get_interp_name()
        elif ptype == "PT_DYNAMIC":
            dynamic = True
            for tag in seg.iter_tags():
                d_tag = tag.entry.d_tag
                if d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif d_tag == "DT_SONAME":
                    soname = tag.soname
                elif d_tag == "DT_RPATH":
                    rpath = tuple(_split_path(tag.rpath))
                elif d_tag == "DT_RUNPATH":
                    runpath = tuple(_split_path(tag.runpath))
                elif d_tag == "DT_FLAGS_1":
                    flags_1 = tag.entry.d_val
        elif ptype == "PT_NOTE":
            notes.extend(_dlopen_notes(seg.data(), elf.little_endian))
    return ElfObject(
        elf_class=elf.elfclass,
        little_endian=elf.little_endian,
        machine=str(hdr.e_machine),
        elf_type=str(hdr.e_type),
        osabi=str(hdr.e_ident.EI_OSABI),
        interp=interp,
        dynamic=dynamic,
        needed=tuple(needed),
        soname=soname,
        rpath=rpath,
        runpath=runpath,
        nodeflib=bool(flags_1 & DF_1_NODEFLIB),
        dlopen=tuple(notes),
    )


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
        items = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
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
