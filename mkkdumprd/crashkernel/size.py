"""Memory sizes as the kernel reads them (memparse) and writes them ("256M"); sizes for people
are mkkdumprd/human_size.py's.

`memparse` is lib/cmdline.c's memparse(): simple_strtoull(s, &end, 0) (0x.. hex, a leading 0
octal, else decimal, no sign), then one optional suffix K M G T P E in either case, each a
power of 1024. Like the kernel it returns where it stopped, so callers can check what follows.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_UNITS = (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10))

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def _radix(s: str, i: int) -> tuple[int, int]:
    """(base, index of first digit), as _parse_integer_fixup_radix() with base 0."""
    if s[i : i + 1] == "0":
        if s[i + 1 : i + 2].lower() == "x" and s[i + 2 : i + 3] in _HEX:
            return 16, i + 2
        return 8, i
    return 10, i


_HEX = set("0123456789abcdefABCDEF")


def strtoull(s: str, start: int = 0) -> tuple[int, int]:
    """simple_strtoull(s, &end, 0): (value, end index); end == start when no digit."""
    base, i = _radix(s, start)
    value = 0
    digits = 0
    while i < len(s):
        try:
            d = int(s[i], 16)
        except ValueError:
            break
        if d >= base:
            break
        # The kernel keeps going on overflow and the value wraps; so do we.
        value = (value * base + d) & _MASK
        i += 1
        digits += 1
    if digits == 0:
        return 0, start
    return value, i


def memparse(s: str, start: int = 0) -> tuple[int, int]:
    """(value, end index). end == start means no number was there ("memory value expected")."""
    value, i = strtoull(s, start)
    if i == start:
        return 0, start
    if i < len(s) and s[i].lower() in _SHIFT:
        value = (value << _SHIFT[s[i].lower()]) & _MASK
        i += 1
    return value, i


def parse_size(text: str) -> int:
    """A whole string as one memparse size ("512M", "0x1000", "2g"); ValueError otherwise."""
    t = text.strip()
    value, end = memparse(t)
    if end == 0 or end != len(t):
        raise ValueError(f"{text!r} is not a size (expected e.g. 512M, 2G, 0x10000000)")
    return value


def format_size(n: int) -> str:
    """Shortest exact kernel spelling: 201326592 -> "192M", 1073741824 -> "1G", 100 -> "100"."""
    if n == 0:
        return "0"
    for unit, shift in _UNITS:
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
