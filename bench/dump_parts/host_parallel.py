"""How much faster this host runs two CPU-bound processes than one: the most that two vCPUs
(two QEMU threads) can give any dump here, measured in the same run as the dumps.

A shared or hyper-threaded host gives less than 2.0 even when idle; under TCG every guest
instruction is host CPU, so a guest's two-CPU speed-up cannot exceed this factor.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import statistics
import time

_BUF = bytes(range(256)) * (1 << 14)  # 4 MiB


def _work(_: int = 0) -> float:
    """Integer arithmetic and sha256, a mix like a compressor's (no I/O)."""
    t = time.perf_counter()
    x = 0
    for i in range(1_500_000):
        x ^= i * 2654435761
    for _ in range(12):
        hashlib.sha256(_BUF).digest()
    return time.perf_counter() - t


def factor(reps: int = 5) -> tuple[float, float, float]:
    """(speed-up of two processes over one, median seconds of one, of two side by side)."""
    ctx = multiprocessing.get_context("fork")
    ones: list[float] = []
    twos: list[float] = []
    with ctx.Pool(2) as pool:
        pool.map(_work, [0, 0])  # workers started before timing
        for _ in range(reps):
            t = time.perf_counter()
            pool.map(_work, [0])
            ones.append(time.perf_counter() - t)
            t = time.perf_counter()
            pool.map(_work, [0, 1], chunksize=1)
            twos.append(time.perf_counter() - t)
    one, two = statistics.median(ones), statistics.median(twos)
    return 2 * one / two, one, two


def line() -> str:
    f, one, two = factor()
    return (f"host floor: two CPU-bound processes side by side run {f:.2f}x as fast as one "
            f"(one {one:.3f} s, two {two:.3f} s, medians of 5): the most two vCPUs can give "
            f"a dump here")


if __name__ == "__main__":
    print(line())
