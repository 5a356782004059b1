"""Initramfs compression formats, recognised by magic the way the kernel does.

The kernel picks a decompressor from the first two bytes of each compressed segment
(`lib/decompress.c`, `decompress_method`), never from a file name; so do we. The writer
produces only `Compression` formats; the reader also recognises the others that distro
tools have used (bzip2, lzma, lzo, lz4) so it can name them.
"""

from __future__ import annotations

import enum


class Compression(enum.Enum):
    """Formats the writer can produce."""

    ZSTD = "zstd"
    GZIP = "gzip"
    XZ = "xz"
    NONE = "none"


class Detected(enum.Enum):
    """Every compressed-segment format the kernel recognises by magic."""

    GZIP = "gzip"
    BZIP2 = "bzip2"
    LZMA = "lzma"
    XZ = "xz"
    LZO = "lzo"
    LZ4 = "lz4"
    ZSTD = "zstd"


# Order matters only for readability; magics do not overlap.
_MAGICS: tuple[tuple[bytes, Detected], ...] = (
    (b"\x1f\x8b", Detected.GZIP),
    (b"\x1f\x9e", Detected.GZIP),
    (b"BZh", Detected.BZIP2),
    (b"\x5d\x00", Detected.LZMA),
    (b"\xfd7zXZ\x00", Detected.XZ),
    (b"\x89LZO", Detected.LZO),
    (b"\x02\x21\x4c\x18", Detected.LZ4),
    (b"\x28\xb5\x2f\xfd", Detected.ZSTD),
)

# Default levels: zstd 3 is the library default and mkinitcpio's measured choice; a kdump
# image is tens of MB, so higher levels buy little and cost seconds (bench/ has figures).
DEFAULT_LEVEL: dict[Compression, int | None] = {
    Compression.ZSTD: 3,
    Compression.GZIP: 6,
    Compression.XZ: 6,
    Compression.NONE: None,
}

LEVEL_RANGE: dict[Compression, tuple[int, int]] = {
    Compression.ZSTD: (1, 19),
    Compression.GZIP: (1, 9),
    Compression.XZ: (0, 9),
}


def parse_compress(text: str) -> tuple[Compression, int | None]:
    """`FORMAT[:LEVEL]` as --compress takes it, e.g. "zstd" or "zstd:19" (smallest zstd).

    Raises ValueError with a one-line message naming the formats or the level range.
    """
    name, sep, level_text = text.partition(":")
    try:
        fmt = Compression(name)
    except ValueError:
        raise ValueError(f"unknown compression {name!r}; use one of "
                         f"{', '.join(c.value for c in Compression)}") from None
    if not sep:
        return fmt, None
    if fmt is Compression.NONE:
        raise ValueError("'none' takes no level")
    lo, hi = LEVEL_RANGE[fmt]
    if not level_text.isdigit() or not lo <= int(level_text) <= hi:
        raise ValueError(f"compression level {level_text!r} for {fmt.value}: use {lo} to {hi}")
    return fmt, int(level_text)


def detect(head: bytes) -> Detected | None:
    """The compressed format whose magic starts `head`, or None."""
    for magic, fmt in _MAGICS:
        if head.startswith(magic):
            return fmt
    return None


