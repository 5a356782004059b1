"""glibc's /etc/ld.so.cache, parsed the way elf/dl-cache.c reads it.

Three layouts exist: the new format alone ("glibc-ld.so.cache1.1", written by every
ldconfig since glibc 2.32), the old libc5-era format ("ld.so-1.7.0") with the new one
hidden in its string table (glibc 2.2-2.31), and the old format alone. Entry flags carry
the ELF type and architecture (FLAG_X8664_LIB64 ...), so a lookup skips entries built for
another ABI exactly as ld.so does. Entries for glibc-hwcaps subdirectories (x86-64-v3 ...)
refer to the cache's extension section.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
EXTENSION_MAGIC = 0xEAA42174
EXT_TAG_GLIBC_HWCAPS = 1
HWCAP_EXTENSION_HIGH = 0x40000000  # (1 << 62) >> 32: entry names a glibc-hwcaps subdir

_NEW_HEADER = struct.Struct("<20sIIB3xI12x")  # magic+version, nlibs, len_strings, flags, ext
_NEW_ENTRY = "iIIIQ"  # flags, key, value, osversion, hwcap
_NEW_ENTRY_SIZE = struct.calcsize("<" + _NEW_ENTRY)
_OLD_ENTRY = struct.Struct("<iII")  # flags, key, value


class CacheFormatError(ValueError):
    """The bytes are not an ld.so.cache this parser understands."""


@dataclass(frozen=True)
class CacheEntry:
    """One library entry of ld.so.cache."""

    name: str
    path: str
    flags: int
    hwcap: int = 0
    hwcaps_subdir: str | None = None  # glibc-hwcaps/<this> when the entry is for one

    @property
    def legacy_hwcap(self) -> bool:
        """A pre-2.33 hwcap entry (tls/, haswell/ ...): ld.so 2.37+ ignores these."""
        return self.hwcaps_subdir is None and self.hwcap != 0


@dataclass(frozen=True)
class LdCache:
    """ld.so.cache parsed: its entries in file order and which format it had."""

    entries: tuple[CacheEntry, ...]
    format: str  # "new", "old+new" or "old"

    def lookup(self, name: str, flags: Iterable[int], hwcaps: tuple[str, ...] = ()
               ) -> str | None:
        """The path ld.so takes from the cache for `name`, or None.

        Among entries with an accepted flag, one for the best supported glibc-hwcaps
        subdirectory wins; otherwise the first plain entry (ldconfig sorts them).
        """
        ok = frozenset(flags)
        best: str | None = None
        best_prio = len(hwcaps)
        for e in self._by_name().get(name, ()):
            if e.flags not in ok or e.legacy_hwcap:
                continue
            if e.hwcaps_subdir is not None:
                if e.hwcaps_subdir not in hwcaps:
                    continue
                prio = hwcaps.index(e.hwcaps_subdir)
                if best is None or prio < best_prio:
                    best, best_prio = e.path, prio
            elif best is None:
                best = e.path
        return best

    def _by_name(self) -> dict[str, list[CacheEntry]]:
        index: dict[str, list[CacheEntry]] | None = self.__dict__.get("_index")
        if index is None:
            index = {}
            for e in self.entries:
                index.setdefault(e.name, []).append(e)
            object.__setattr__(self, "_index", index)
        return index


def parse_ld_cache(data: bytes) -> LdCache:
    if data.startswith(NEW_MAGIC):
        return LdCache(tuple(_parse_new(data, 0)), "new")
    if data.startswith(OLD_MAGIC):
        if len(data) < 16:
            raise CacheFormatError("truncated old-format ld.so.cache header")
        (nlibs,) = struct.unpack_from("<I", data, 12)
        old_end = 16 + nlibs * _OLD_ENTRY.size
        new_off = (old_end + 7) & ~7  # ALIGN_CACHE: the new header is 8-byte aligned
        if data[new_off:new_off + len(NEW_MAGIC)] == NEW_MAGIC:
            return LdCache(tuple(_parse_new(data, new_off)), "old+new")
        return LdCache(tuple(_parse_old(data, nlibs, old_end)), "old")
    raise CacheFormatError("not an ld.so.cache (unknown magic)")


def _cstr(data: bytes, off: int) -> str:
    end = data.find(b"\0", off)
    if off >= len(data) or end < 0:
        raise CacheFormatError(f"string offset {off} outside the cache")
    return data[off:end].decode("utf-8", "surrogateescape")


def _parse_new(data: bytes, base: int) -> list[CacheEntry]:
    if len(data) < base + _NEW_HEADER.size:
        raise CacheFormatError("truncated ld.so.cache header")
    # The endianness byte sits at the same offset in both byte orders (2 = LE, 3 = BE).
    bo = ">" if data[base + 28] == 3 else "<"
    _magic, nlibs, _len_strings, _endian, ext_off = struct.unpack_from(
        bo + _NEW_HEADER.format[1:], data, base)
    if base + _NEW_HEADER.size + nlibs * _NEW_ENTRY_SIZE > len(data):
        raise CacheFormatError("ld.so.cache entry table runs past the end of the file")
    subdirs = _hwcaps_subdirs(data, base, ext_off, bo)
    out: list[CacheEntry] = []
    off = base + _NEW_HEADER.size
    entry = struct.Struct(bo + _NEW_ENTRY)
    for _ in range(nlibs):
        flags, key, value, _osv, hwcap = entry.unpack_from(data, off)
        off += entry.size
        sub: str | None = None
        if hwcap >> 32 == HWCAP_EXTENSION_HIGH:
            idx = hwcap & 0xFFFFFFFF
            sub = subdirs[idx] if idx < len(subdirs) else ""
        out.append(CacheEntry(_cstr(data, base + key), _cstr(data, base + value),
                              flags, hwcap, sub))
    return out


def _hwcaps_subdirs(data: bytes, base: int, ext_off: int, bo: str) -> list[str]:
    if ext_off == 0 or base + ext_off + 8 > len(data):
        return []
    magic, count = struct.unpack_from(bo + "II", data, base + ext_off)
    if magic != EXTENSION_MAGIC:
        return []
    for i in range(count):
        tag, _flags, off, size = struct.unpack_from(bo + "IIII", data,
                                                base + ext_off + 8 + 16 * i)
        if tag == EXT_TAG_GLIBC_HWCAPS:
            n = size // 4
            offs = struct.unpack_from(f"{bo}{n}I", data, base + off)
            return [_cstr(data, base + o) for o in offs]
    return []


def _parse_old(data: bytes, nlibs: int, strings: int) -> list[CacheEntry]:
    out: list[CacheEntry] = []
    for i in range(nlibs):
        flags, key, value = _OLD_ENTRY.unpack_from(data, 16 + i * _OLD_ENTRY.size)
        out.append(CacheEntry(_cstr(data, strings + key), _cstr(data, strings + value), flags))
    return out
