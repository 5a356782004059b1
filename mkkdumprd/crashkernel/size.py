"""Memory sizes as the kernel reads them (memparse) and writes them ("256M"); sizes for people
are mkkdumprd/human_size.py's.

`memparse` is lib/cmdline.c's memparse(): simple_strtoull(s, &end, 0) (0x.. hex, a leading 0
octal, else decimal, no sign), then one optional suffix K M G T P E in either case, each a
power of 1024. Like the kernel it returns where it stopped, so callers can check what follows.

Digits are ASCII only, as the kernel's _parse_integer_limit() compares bytes with '0'..'9'
and 'a'..'f' (Python's int() would also take Arabic-Indic or fullwidth digits). On
overflow the kernel keeps going and the value wraps modulo 2**64 (it only sets
KSTRTOX_OVERFLOW, which simple_strtoull ignores), and the suffix shift wraps too; so do
we, and `memparse_checked` says it happened.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_SHIFT_ANY = frozenset("kmgtpeKMGTPE")
_UNITS = (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10))

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


# ASCII only: the kernel's digit test is on bytes, not on Unicode categories.
_DIGIT = {c: int(c, 16) for c in "0123456789abcdefABCDEF"}


def _radix(s: str, i: int) -> tuple[int, int]:
    """(base, index of first digit), as _parse_integer_fixup_radix() with base 0."""
    if s[i : i + 1] == "0":
        if s[i + 1 : i + 2] in ("x", "X") and s[i + 2 : i + 3] in _DIGIT:
            return 16, i + 2
        return 8, i
    return 10, i


def _strtoull(s: str, start: int) -> tuple[int, int, bool]:
    base, i = _radix(s, start)
    value = 0
    digits = 0
    overflow = False
    while i < len(s):
        d = _DIGIT.get(s[i])
        if d is None or d >= base:
            break
        value = value * base + d
        if value > _MASK:
            overflow = True
            value &= _MASK
        i += 1
        digits += 1
    if digits == 0:
        return 0, start, False
    return value, i, overflow


def strtoull(s: str, start: int = 0) -> tuple[int, int]:
    """simple_strtoull(s, &end, 0): (value, end index); end == start when no digit."""
    value, end, _ = _strtoull(s, start)
    return value, end


def memparse_checked(s: str, start: int = 0) -> tuple[int, int, bool]:
    """memparse(), plus whether the number or its suffix overflowed 64 bits (and wrapped)."""
    value, i, overflow = _strtoull(s, start)
    # No digits: the kernel still looks at the suffix and steps over it ("M" gives 0 and
    # ends after the M), so callers' "memory value expected" checks pass there too.
    if i < len(s) and s[i] in _SHIFT_ANY:
        shifted = value << _SHIFT[s[i].lower()]
        overflow = overflow or shifted > _MASK
        value = shifted & _MASK
        i += 1
    return value, i, overflow


def memparse(s: str, start: int = 0) -> tuple[int, int]:
    """(value, end index). end == start means no number was there ("memory value expected")."""
    value, end, _ = memparse_checked(s, start)
    return value, end


def parse_size(text: str) -> int:
    """A whole string as one memparse size ("512M", "0x1000", "2g"); ValueError otherwise."""
    t = text.strip(" \t\n")  # ASCII blanks only, as everything else here
    value, end = memparse(t)
    if strtoull(t)[1] == 0 or end != len(t):
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
