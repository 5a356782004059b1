"""Parity with the real loader: our closure equals what `ldd` resolves, for every dynamic
ELF executable and shared library under /usr/bin, /usr/sbin and /usr/lib/<triplet>.

ldd is only an oracle here; the product never runs it. Real paths are compared, because
the loader may open a library through a symlinked directory (/lib -> usr/lib).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.elf.closure import ElfError, Resolver
from mkkdumprd.host import Host

TREES = ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd (the oracle) is not installed"),
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="paths are x86_64 Debian's"),
]


def dynamic_elves(trees: tuple[str, ...]) -> list[str]:
    """Regular files that are ET_EXEC/ET_DYN ELF objects of this machine's class."""
    out: list[str] = []
    for tree in trees:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    with open(p, "rb") as f:
                        head = f.read(20)
                except OSError:
                    continue
                # 64-bit little-endian, e_type ET_EXEC (2) or ET_DYN (3)
                if head[:5] == b"\x7fELF\x02" and head[16] in (2, 3):
                    out.append(p)
    return out


def run_ldd(path: str) -> tuple[str, set[str] | None, bool]:
    """(path, real paths ldd resolved or None when ldd cannot handle it, any 'not found')."""
    try:
        proc = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        return path, None, False
    text = proc.stdout
    if "not found" in text:
        return path, set(), True
    if proc.returncode != 0 or "not a dynamic executable" in text:
        return path, None, False
    if "statically linked" in text:  # ldd's words for "no DT_NEEDED": nothing to load
        return path, set(), False
    found: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" (", 1)[0].strip()
            if target:
                found.add(os.path.realpath(target))
        elif line.startswith("/"):
            found.add(os.path.realpath(line.split(" (", 1)[0]))
    return path, found, False


def test_closure_matches_ldd_for_system_trees() -> None:
    files = dynamic_elves(TREES)
    assert len(files) > 200, f"expected a real system, found only {len(files)} ELF files"
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) * 2) as pool:
        oracle = list(pool.map(run_ldd, files))

    view = Host(Path("/"))
    resolver = Resolver(view)
    compared = skipped = missing = 0
    mismatches: list[str] = []
    for path, expected, not_found in oracle:
        if expected is None:
            skipped += 1
            continue
        missing += not_found
        try:
            got = {str(view.resolve(p)) for p in resolver.objects_of(PurePosixPath(path))}
        except ElfError as exc:
            if not not_found:
                mismatches.append(f"{path}: we failed ({exc}) but ldd resolved it")
            compared += 1
            continue
        if not_found:
            mismatches.append(f"{path}: ldd reports a missing library, we resolved {got}")
        else:
            got.discard(os.path.realpath(path))
            expected.discard(os.path.realpath(path))
            if got != expected:
                mismatches.append(f"{path}: only ours {sorted(got - expected)}, "
                                  f"only ldd {sorted(expected - got)}")
        compared += 1
    print(f"ldd parity: {len(files)} ELF files, {compared} compared ({missing} of them with "
          f"a library ldd cannot find either), {skipped} skipped (ldd cannot handle them), "
          f"{len(mismatches)} mismatches")
    assert compared > 200
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(mismatches)
