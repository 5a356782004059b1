"""Benchmark: ELF closures for every file in /usr/bin, in one process, against `ldd` run
on each file one after another (the way a shell-script initramfs builder does it).

Usage: .venv/bin/python bench/elf_closure.py [DIR ...]   (default: /usr/bin)
Prints both wall times, the ratio and how many files each side handled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import PurePosixPath

from mkkdumprd.elf.closure import ElfError, Resolver
from mkkdumprd.host import Host


def candidates(dirs: list[str]) -> list[str]:
    out = []
    for d in dirs:
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def ours(files: list[str]) -> tuple[float, int, int]:
    start = time.perf_counter()
    resolver = Resolver(Host.this_machine())
    ok = failed = 0
    for f in files:
        try:
            resolver.objects_of(PurePosixPath(f))
            ok += 1
        except ElfError:
            failed += 1  # scripts with missing interpreters, data files, ...
    return time.perf_counter() - start, ok, failed


def with_ldd(files: list[str]) -> tuple[float, int, int]:
    start = time.perf_counter()
    ok = failed = 0
    for f in files:
        r = subprocess.run(["ldd", f], capture_output=True)
        if r.returncode == 0:
            ok += 1
        else:
            failed += 1
    return time.perf_counter() - start, ok, failed


def main() -> None:
    dirs = sys.argv[1:] or ["/usr/bin"]
    files = candidates(dirs)
    t_ours, ok_ours, bad_ours = ours(files)
    t_ldd, ok_ldd, bad_ldd = with_ldd(files)
    print(f"files: {len(files)} regular files in {', '.join(dirs)}")
    print(f"mkkdumprd (one process, cold caches): {t_ours:7.2f} s  "
          f"({ok_ours} resolved, {bad_ours} not ELF/script or unresolvable)")
    print(f"ldd, one run per file:                {t_ldd:7.2f} s  "
          f"({ok_ldd} exit 0, {bad_ldd} errors)")
    print(f"ratio ldd/mkkdumprd: {t_ldd / t_ours:.1f}x")


if __name__ == "__main__":
    main()
