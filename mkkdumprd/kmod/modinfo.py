"""The `.modinfo` section of a kernel module file (plain or compressed), via pyelftools.

`.modinfo` is a run of NUL-terminated `key=value` strings (alias, depends, softdep,
firmware, ...). Building a full pyelftools ELFFile costs ~0.6 ms per module, mostly in
creating its struct parsers, so the parsers are built once per (endianness, class) and
only the ELF header and section headers are parsed: ~0.3 ms per module.
"""

from __future__ import annotations

import gzip
import lzma
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import zstandard
from elftools.elf.structs import ELFStructs

from mkkdumprd.errors import OperationError
from mkkdumprd.image.spec import Codec
from mkkdumprd.kmod.names import module_suffix

_ELF_MAGIC = b"\x7fELF"


class ModinfoError(OperationError):
    """A module file is not a readable ELF object."""


@dataclass(frozen=True)
class ModInfo:
    """The `.modinfo` pairs of one module, in section order (repeated keys kept)."""

    pairs: tuple[tuple[str, str], ...]

    def get_all(self, key: str) -> tuple[str, ...]:
        return tuple(v for k, v in self.pairs if k == key)

    def get(self, key: str) -> str | None:
        for k, v in self.pairs:
            if k == key:
                return v
        return None

    @property
    def depends(self) -> tuple[str, ...]:
        """Hard dependencies (modpost's `depends=`, comma separated, often empty)."""
        raw = self.get("depends") or ""
        return tuple(x for x in raw.split(",") if x)

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.get_all("alias")

    @property
    def softdeps(self) -> tuple[str, ...]:
        return self.get_all("softdep")

    @property
    def firmware(self) -> tuple[str, ...]:
        return self.get_all("firmware")


def parse_modinfo(data: bytes) -> ModInfo:
    pairs: list[tuple[str, str]] = []
    for raw in data.split(b"\0"):
        if not raw:
            continue
        key, sep, value = raw.decode("utf-8", "replace").partition("=")
        if sep:
            pairs.append((key, value))
    return ModInfo(tuple(pairs))


def decompress(data: bytes, codec: Codec, where: Path | str = "") -> bytes:
    try:
        if codec is Codec.NONE:
            return data
        if codec is Codec.XZ:
            return lzma.decompress(data)
        if codec is Codec.GZIP:
            return gzip.decompress(data)
        # Frames written by `zstd --no-content-size` or streaming writers carry no size,
        # which ZstdDecompressor.decompress() refuses; a decompressobj takes both.
        out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return out
    except (lzma.LZMAError, OSError, EOFError, zstandard.ZstdError) as exc:
        raise ModinfoError(f"cannot decompress {codec.value} module {where}: {exc}; "
                           f"reinstall the kernel package") from exc


def read_module_bytes(path: Path) -> bytes:
    """The ELF bytes of a module file, decompressed according to its suffix."""
    found = module_suffix(path.name)
    codec = found[1] if found else Codec.NONE
    return decompress(path.read_bytes(), codec, path)


@lru_cache(maxsize=4)
def _structs(little_endian: bool, elfclass: int) -> Any:
    s = ELFStructs(little_endian=little_endian, elfclass=elfclass)
    s.create_basic_structs()
    # Section headers do not depend on machine or OS ABI; any value builds the parser.
    s.create_advanced_structs(e_type="ET_REL", e_machine="EM_NONE",
                              e_ident_osabi="ELFOSABI_SYSV")
    return s


def section_bytes(elf: bytes, name: str, where: Path | str = "") -> bytes | None:
    """Contents of the section called `name` in an ELF image, or None if it has none."""
    if elf[:4] != _ELF_MAGIC or len(elf) < 64:
        raise ModinfoError(f"{where} is not an ELF file; it cannot be a kernel module")
    ei_class, ei_data = elf[4], elf[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise ModinfoError(f"{where} has an unknown ELF class or byte order")
    s = _structs(ei_data == 1, 32 if ei_class == 1 else 64)
    try:
        hdr = s.Elf_Ehdr.parse(elf)
        shoff, shnum, shentsize = hdr["e_shoff"], hdr["e_shnum"], hdr["e_shentsize"]
        shdrs = [s.Elf_Shdr.parse(elf[shoff + i * shentsize: shoff + (i + 1) * shentsize])
                 for i in range(shnum)]
        strtab = shdrs[hdr["e_shstrndx"]]["sh_offset"]
    except Exception as exc:  # construct raises its own error zoo on truncated input
        raise ModinfoError(f"{where} has a damaged ELF header: {exc}") from exc
    want = name.encode() + b"\0"
    for sh in shdrs:
        at = strtab + sh["sh_name"]
        if elf[at: at + len(want)] == want:
            off, size = sh["sh_offset"], sh["sh_size"]
            if off + size > len(elf):
                raise ModinfoError(f"{where}: section {name} runs past the end of the file")
            return elf[off: off + size]
    return None


def read_modinfo(path: Path) -> ModInfo:
    """The `.modinfo` of the module file at `path` (.ko, .ko.xz, .ko.zst, .ko.gz)."""
    try:
        elf = read_module_bytes(path)
    except OSError as exc:
        raise ModinfoError(f"cannot read module {path}: {exc.strerror or exc}") from exc
    data = section_bytes(elf, ".modinfo", path)
    return parse_modinfo(data or b"")
