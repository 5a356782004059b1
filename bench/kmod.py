"""Benchmark: module index load + closure of a typical capture set, with depmod's index
and from `.modinfo` alone, against a loop of `modprobe --show-depends`.

Usage: .venv/bin/python bench/kmod.py [--repeat N] [--codec xz|zst]
Uses the cached real Debian kernel of the test suite (downloaded on first use).
Aims: closure from the index < 50 ms; full .modinfo scan of ~4000 modules < 3 s on 2 cores.
Figures are wall-clock medians; on a machine shared with other jobs they are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.index import ModuleIndex
from tests.support.debian_kernel import Kernel, debian_kernel
from tests.support.kmod_trees import compressed, without_index

NAMES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "xfs", "nfs", "nvme", "ahci",
         "e1000e", "dm_crypt"]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def modprobe_loop(k: Kernel, empty: Path) -> set[str]:
    out: set[str] = set()
    for name in NAMES:
        text = subprocess.run(["modprobe", "-d", str(k.root), "-S", k.kver, "-C", str(empty),
                               "--show-depends", name], capture_output=True, text=True,
                              check=True).stdout
        out |= {line.split()[1] for line in text.splitlines() if line.startswith("insmod")}
    return out


def closure_paths(index: ModuleIndex) -> set[str]:
    return {str(m.path) for m in resolve_modules(index, NAMES).modules}


def report(label: str, seconds: float, base: float | None = None) -> None:
    ratio = f"  ({seconds / base:5.2f}x modprobe loop)" if base else ""
    print(f"  {label:<44} {seconds * 1000:9.1f} ms{ratio}")


def depmod_scan(k: Kernel) -> None:
    subprocess.run(["depmod", "-n", "-b", str(k.root), k.kver], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_tree(k: Kernel, label: str, use_index: bool, repeat: int, base: float) -> None:
    print(f"{label}: {k.kmoddir}")
    if not use_index:
        t_dep, _ = timed(lambda: depmod_scan(k), 1)
        report("kmod's own full scan: depmod -n (1 core)", t_dep, base)
    t_load, index = timed(lambda: ModuleIndex.load(k.kmoddir, k.kver, use_index=use_index),
                          repeat)
    assert isinstance(index, ModuleIndex)
    report(f"index load ({index.source}, {len(index.modules)} modules)", t_load, base)
    t_cold, _ = timed(lambda: closure_paths(
        ModuleIndex.load(k.kmoddir, k.kver, use_index=use_index)), 1)
    fresh = ModuleIndex.load(k.kmoddir, k.kver, use_index=use_index)
    t_first, paths = timed(lambda: closure_paths(fresh), 1)
    t_warm, _ = timed(lambda: closure_paths(fresh), repeat)
    assert isinstance(paths, set)
    report(f"closure of {len(NAMES)} names, first ({len(paths)} .ko)", t_first, base)
    report("closure again (firmware lists cached)", t_warm, base)
    report("load + closure, cold", t_cold, base)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--codec", choices=["xz", "zst", "none"], default="xz")
    args = ap.parse_args()
    k = debian_kernel()
    empty = Path("/tmp") / f"mkkdumprd-bench-empty-{os.getpid()}"
    empty.mkdir(exist_ok=True)
    try:
        print(f"kernel {k.kver}, {os.cpu_count()} CPUs (shared machine: figures are noisy)")
        print(f"names: {' '.join(NAMES)}")
        t_mp, want = timed(lambda: modprobe_loop(k, empty), args.repeat)
        print("kmod:")
        report(f"modprobe --show-depends x{len(NAMES)} ({len(want)} .ko)", t_mp)  # type: ignore[arg-type]
        index = ModuleIndex.load(k.kmoddir, k.kver)
        assert closure_paths(index) == want, "closure differs from modprobe"
        run_tree(k, "depmod index", True, args.repeat, t_mp)
        run_tree(without_index(k), "no index (.modinfo scan)", False, max(1, args.repeat // 2),
                 t_mp)
        if args.codec != "none":
            run_tree(compressed(k, args.codec), f"{args.codec} tree, .modinfo scan", False, 1,
                     t_mp)
    finally:
        empty.rmdir()


if __name__ == "__main__":
    main()
