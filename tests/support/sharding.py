"""Splitting the default run into N pytest processes that take about as long each.

dev/test runs the suite as two processes side by side (MKKDUMPRD_TEST_SHARD=1/2 and 2/2):
each keeps whole test files, and the files go to the shards by weight, heaviest first, each
to the lightest shard so far (longest-processing-time first). The weights are rough
figures of what a test costs on this project's 2-core machine: a QEMU boot about 90 s, a
`slow` test about 15 s, anything else a fraction of a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

VM_SECONDS = 90.0
SLOW_SECONDS = 15.0
OTHER_SECONDS = 0.2
_SHARD = re.compile(r"([1-9][0-9]*)/([1-9][0-9]*)")


def parse(value: str) -> tuple[int, int]:
    """`I/N` (1 <= I <= N) as (I, N); a ValueError names the form otherwise."""
    m = _SHARD.fullmatch(value.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"MKKDUMPRD_TEST_SHARD={value!r}: expected I/N with 1 <= I <= N")
    return int(m.group(1)), int(m.group(2))


def weight(markers: Iterable[str]) -> float:
    names = set(markers)
    if "vm" in names:
        return VM_SECONDS
    return SLOW_SECONDS if "slow" in names else OTHER_SECONDS


def assign(file_weights: Mapping[str, float], shards: int) -> dict[str, int]:
    """Each file's shard (1..shards); ties go by file name, so every process agrees."""
    load = [0.0] * shards
    out: dict[str, int] = {}
    for name, w in sorted(file_weights.items(), key=lambda kv: (-kv[1], kv[0])):
        i = min(range(shards), key=lambda k: (load[k], k))
        load[i] += w
        out[name] = i + 1
    return out
