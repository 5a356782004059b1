"""The `.modinfo` section of a kernel module file (plain or compressed).

`.modinfo` is a run of NUL-terminated `key=value` strings (alias, depends, softdep,
firmware, ...). Building a full pyelftools ELFFile costs ~0.6 ms per module, mostly in
creating its struct parsers, and importing pyelftools ~15 ms of a cold build, so the ELF
header and the section header table (three fields wanted out of ten, ~50 sections) are
unpacked with `struct`, and a plain .ko is read in four small pieces. About 0.05 ms per
plain module.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.image.decode import DecodeError, decode
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
        return decode(data, codec)
    except DecodeError as exc:
        raise ModinfoError(f"cannot decompress {codec.value} module {where}: {exc}; "
                           f"reinstall the kernel package") from None


def read_module_bytes(host: Host, path: Path) -> bytes:
    """The ELF bytes of a module file, decompressed according to its suffix."""
    found = module_suffix(path.name)
    codec = found[1] if found else Codec.NONE
    return decompress(host.read_bytes(path), codec, path)


Reader = Callable[[int, int], bytes]
# Elf{32,64}_Shdr: name type flags addr offset size link info addralign entsize.
_SHDR = {(le, is64): struct.Struct(("<" if le else ">") + ("IIQQQQIIQQ" if is64 else "I" * 10))
         for le in (True, False) for is64 in (True, False)}
# Elf{32,64}_Ehdr after e_ident: type machine version entry phoff shoff flags ehsize
# phentsize phnum shentsize shnum shstrndx.
_EHDR = {(le, is64): struct.Struct(("<" if le else ">") + ("HHIQQQIHHHHHH" if is64
                                                           else "HHIIIIIHHHHHH"))
         for le in (True, False) for is64 in (True, False)}


def _find_sections(read: Reader, total: int, wanted: Sequence[str],
                   where: Path | str) -> dict[str, bytes]:
    """The `wanted` sections that exist, reading only the ELF header, section headers,
    section name table and those sections through `read(offset, size)`."""
    ident = read(0, 64)
    if ident[:4] != _ELF_MAGIC or len(ident) < 64:
        raise ModinfoError(f"{where} is not an ELF file; it cannot be a kernel module")
    ei_class, ei_data = ident[4], ident[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise ModinfoError(f"{where} has an unknown ELF class or byte order")
    try:
        hdr = _EHDR[(ei_data == 1, ei_class == 2)].unpack_from(ident, 16)
        shoff, shentsize, shnum, shstrndx = hdr[5], hdr[10], hdr[11], hdr[12]
        if shoff + shnum * shentsize > total:
            raise ValueError("section headers run past the end of the file")
        shdr = _SHDR[(ei_data == 1, ei_class == 2)]
        if shentsize != shdr.size:
            raise ValueError(f"section header size {shentsize}, expected {shdr.size}")
        # (sh_name, sh_offset, sh_size) of every section; pyelftools' construct parser
        # would spend 85% of a full scan here, on fields nobody reads.
        shdrs = [(h[0], h[4], h[5]) for h in shdr.iter_unpack(read(shoff, shnum * shentsize))]
        _, str_off, str_size = shdrs[shstrndx]
        names = read(str_off, str_size)
    except Exception as exc:  # a truncated or damaged table: IndexError, struct.error...
        raise ModinfoError(f"{where} has a damaged ELF header: {exc}") from exc
    out: dict[str, bytes] = {}
    for name in wanted:
        want = name.encode() + b"\0"
        for at, off, size in shdrs:
            if names[at: at + len(want)] == want:
                if off + size > total:
                    raise ModinfoError(f"{where}: section {name} runs past the end of the file")
                out[name] = read(off, size)
                break
    return out


def read_sections(host: Host, path: Path, wanted: Sequence[str]) -> dict[str, bytes]:
    """The `wanted` sections of the module file at `path` (.ko, .ko.xz, .ko.zst, .ko.gz)."""
    found = module_suffix(path.name)
    try:
        if found is None or found[1] is Codec.NONE:
            # Plain modules: a few small reads instead of the whole file (xfs.ko is 3 MB).
            with host.open(path) as f:
                def read(off: int, size: int) -> bytes:
                    f.seek(off)
                    return f.read(size)
                return _find_sections(read, os.fstat(f.fileno()).st_size, wanted, path)
        elf = read_module_bytes(host, path)
        return _find_sections(lambda off, size: elf[off: off + size], len(elf), wanted, path)
    except OSError as exc:
        raise ModinfoError(f"cannot read module {path}: {exc.strerror or exc}") from exc


def read_modinfo(host: Host, path: Path) -> ModInfo:
    """The `.modinfo` of the module file at `path` (.ko, .ko.xz, .ko.zst, .ko.gz)."""
    return parse_modinfo(read_sections(host, path, (".modinfo",)).get(".modinfo", b""))


def exported_symbols(ksymtab_strings: bytes) -> tuple[str, ...]:
    """Names in `__ksymtab_strings`, which depmod turns into modules.symbols."""
    return tuple(x.decode("utf-8", "replace") for x in ksymtab_strings.split(b"\0") if x)
