"""Tiny but real ELF relocatable objects with a `.modinfo` section, and module trees.

The objects are what pyelftools (and kmod's modinfo) read: an ELF64 little-endian header,
a `.modinfo` section of NUL-terminated key=value strings and a section name table.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import zstandard

ModinfoSpec = Sequence[tuple[str, str]] | Mapping[str, str | Sequence[str]]


def _pairs(info: ModinfoSpec) -> list[tuple[str, str]]:
    if isinstance(info, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in info.items():
            out.extend((k, x) for x in ([v] if isinstance(v, str) else v))
        return out
    return list(info)


def fake_ko(info: ModinfoSpec) -> bytes:
    modinfo = b"".join(f"{k}={v}".encode() + b"\0" for k, v in _pairs(info))
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    ehsize, shentsize = 64, 64
    modinfo_off = ehsize
    shstr_off = modinfo_off + len(modinfo)
    shoff = (shstr_off + len(shstrtab) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, ehsize, 0, 0,
                                 shentsize, 3, 2)

    def shdr(name: int, typ: int, flags: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, typ, flags, 0, off, size, 0, 0, 1, 0)

    body = header + modinfo + shstrtab
    body += bytes(shoff - len(body))
    body += shdr(0, 0, 0, 0, 0)
    body += shdr(1, 1, 2, modinfo_off, len(modinfo))   # PROGBITS, SHF_ALLOC
    body += shdr(10, 3, 0, shstr_off, len(shstrtab))   # STRTAB
    return body


def compress(data: bytes, suffix: str) -> bytes:
    if suffix.endswith(".xz"):
        return lzma.compress(data, check=lzma.CHECK_CRC32)
    if suffix.endswith(".zst"):
        return zstandard.ZstdCompressor().compress(data)
    if suffix.endswith(".gz"):
        return gzip.compress(data)
    return data


def write_module(kmoddir: Path, relpath: str, info: ModinfoSpec) -> Path:
    path = kmoddir / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compress(fake_ko(info), relpath))
    return path


def write_builtin(kmoddir: Path, builtin: Iterable[str],
                  builtin_aliases: Iterable[tuple[str, str]] = ()) -> None:
    (kmoddir / "modules.builtin").write_text(
        "".join(f"kernel/builtin/{n}.ko\n" for n in builtin))
    (kmoddir / "modules.builtin.modinfo").write_bytes(
        b"".join(f"{n}.alias={a}".encode() + b"\0" for n, a in builtin_aliases))


def write_depmod_text(kmoddir: Path, modules: Mapping[str, Sequence[str]],
                      aliases: Iterable[tuple[str, str]] = (),
                      softdeps: Iterable[tuple[str, str]] = ()) -> None:
    """modules.dep (relpath -> deps, users first), modules.alias, modules.softdep."""
    (kmoddir / "modules.dep").write_text(
        "".join(f"{rel}:{''.join(' ' + d for d in deps)}\n" for rel, deps in modules.items()))
    (kmoddir / "modules.alias").write_text(
        "# Aliases extracted from modules themselves.\n"
        + "".join(f"alias {a} {m}\n" for a, m in aliases))
    (kmoddir / "modules.softdep").write_text(
        "# Soft dependencies extracted from modules themselves.\n"
        + "".join(f"softdep {m} {v}\n" for m, v in softdeps))
