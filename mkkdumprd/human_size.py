"""Byte counts for people: the one formatter every command prints sizes with.

(crashkernel/size.py is the other direction and the kernel's syntax: memparse, "256M".)
"""

from __future__ import annotations

_UNITS = (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0))


def human_size(n: int, unit: str | None = None) -> str:
    """"192 MiB", "1.5 GiB", "812 KiB", "17 B": the largest unit that is at most `n`, one
    decimal unless the value is whole or at least 100. `unit` fixes the unit (rounded to a
    whole number: columns that line up)."""
    if unit is not None:
        shift = dict(_UNITS)[unit]
        return f"{n / (1 << shift):.0f} {unit}"
    for name, shift in _UNITS[:-1]:
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {name}" if v == int(v) or v >= 100 else f"{v:.1f} {name}"
    return f"{n} B"
