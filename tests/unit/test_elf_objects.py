"""Reading one ELF file: header, PT_INTERP, dynamic section, .note.dlopen, caching."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from mkkdumprd.elf import objects
from mkkdumprd.elf.objects import NotElf, parse_dlopen_json, read_elf, read_ident
from tests.support.elf_fixtures import build_lib, build_prog, needs_gcc, rpath, runpath


@needs_gcc
def test_dynamic_section_fields(tmp_path: Path) -> None:
    liba = build_lib(tmp_path / "liba.so.1", ldflags=runpath("/r1", "$ORIGIN/x"))
    prog = build_prog(tmp_path / "prog", (liba,), rpath("/p1:/p2"))
    lib = read_elf(liba)
    assert lib.soname == "liba.so.1"
    assert lib.runpath == ("/r1", "$ORIGIN/x") and lib.rpath is None
    assert lib.interp is None and lib.elf_type == "ET_DYN"
    exe = read_elf(prog)
    assert exe.interp == "/lib64/ld-linux-x86-64.so.2"
    assert exe.needed[0] == "liba.so.1" and "libc.so.6" in exe.needed
    assert exe.rpath == ("/p1", "/p2") and exe.runpath is None
    assert (exe.machine, exe.elf_class, exe.little_endian) == ("EM_X86_64", 64, True)
    assert read_ident(prog) == objects.ElfIdent(64, True, "EM_X86_64")


@needs_gcc
def test_parsed_objects_are_cached_by_identity(tmp_path: Path) -> None:
    lib = build_lib(tmp_path / "libc1.so")
    first = read_elf(lib)
    assert read_elf(lib) is first
    os.utime(lib, ns=(0, 1))  # another mtime: parsed again
    assert read_elf(lib) is not first


def test_not_elf(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("#!/bin/sh\n")
    with pytest.raises(NotElf):
        read_elf(f)
    with pytest.raises(NotElf):
        read_ident(f)
    f.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\x3e\x00")
    with pytest.raises(NotElf, match="broken ELF headers"):
        read_elf(f)


def test_dlopen_json_variants() -> None:
    notes = parse_dlopen_json(
        b'[{"feature":"a","soname":["liba.so.1","liba.so.0"]},'
        b'{"feature":"b","priority":"suggested","soname":"libb.so.2"},'
        b'"junk", {"feature":"c","soname":5}]')
    assert [(n.feature, n.priority, n.sonames) for n in notes] == [
        ("a", "recommended", ("liba.so.1", "liba.so.0")),
        ("b", "suggested", ("libb.so.2",)),
    ]
    assert parse_dlopen_json(b"{not json") == []
    assert parse_dlopen_json(b'{"feature": "x"}') == []


def test_note_segment_parsing_both_byte_orders() -> None:
    desc = b'[{"feature":"z","soname":["libz.so.1"]}]\0'
    pad = b"\0" * (-len(desc) % 4)
    for little in (True, False):
        fmt = "<III" if little else ">III"
        other = struct.pack(fmt, 4, 4, 1) + b"GNU\0" + b"\0" * 4
        note = struct.pack(fmt, 4, len(desc), 0x407C0C0A) + b"FDO\0" + desc + pad
        got = objects._dlopen_notes(other + note, little)
        assert [n.sonames for n in got] == [("libz.so.1",)]


def _pyelftools_view(path: str) -> tuple[object, ...]:
    """The same fields read through pyelftools' full object model (the oracle)."""
    from elftools.elf.elffile import ELFFile

    needed: list[str] = []
    soname = rpath = runpath = interp = None
    with open(path, "rb") as f:
        elf = ELFFile(f)
        seg: Any
        for seg in elf.iter_segments():
            if seg.header.p_type == "PT_INTERP":
                interp = seg.get_interp_name()
            elif seg.header.p_type == "PT_DYNAMIC":
                for tag in seg.iter_tags():
                    d = tag.entry.d_tag
                    if d == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif d == "DT_SONAME":
                        soname = tag.soname
                    elif d == "DT_RPATH":
                        rpath = tuple(p for p in tag.rpath.split(":") if p)
                    elif d == "DT_RUNPATH":
                        runpath = tuple(p for p in tag.runpath.split(":") if p)
        return (tuple(needed), soname, rpath, runpath, interp, elf.header.e_machine,
                elf.header.e_type, elf.elfclass)


def _starts_with_elf_magic(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == objects.ELF_MAGIC


def test_reader_agrees_with_pyelftools_on_system_files() -> None:
    files: list[str] = []
    for d in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/debug"):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d))[::5]:
            p = os.path.join(d, name)
            if os.path.isfile(p) and not os.path.islink(p) and _starts_with_elf_magic(p):
                files.append(p)
    if len(files) < 20:
        pytest.skip("too few ELF files on this machine")
    for p in files:
        o = read_elf(Path(p))
        got = (o.needed, o.soname, o.rpath, o.runpath, o.interp, o.machine, o.elf_type,
               o.elf_class)
        assert got == _pyelftools_view(p), p


def test_names_without_pyelftools_are_pyelftools_names() -> None:
    """The values a build meets are named without importing pyelftools, by its names."""
    from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_EI_OSABI

    machines = {v: k for k, v in ENUM_E_MACHINE.items()
                if isinstance(v, int) and k.startswith("EM_")}
    types = {v: k for k, v in ENUM_E_TYPE.items() if isinstance(v, int)}
    osabis = {v: k for k, v in ENUM_EI_OSABI.items() if isinstance(v, int)}
    for value, name in objects._COMMON_MACHINES.items():
        assert machines[value] == name
    for value, name in objects._COMMON_TYPES.items():
        assert types[value] == name
    for value, name in objects._COMMON_OSABIS.items():
        assert osabis[value] == name
    assert objects.machine_name(62) == "EM_X86_64"
    assert objects.machine_name(2) == machines[2]   # from pyelftools' table
    assert objects.machine_name(65000) == "EM_65000"
