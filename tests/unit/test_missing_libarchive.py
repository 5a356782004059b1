"""pip cannot bring libarchive's C library: without it a build says in one line what to
install (exit 1), instead of libarchive-c's `undefined symbol: archive_version_number`.

The library is hidden through libarchive-c's own LIBARCHIVE variable: pointing it at libc
gives exactly the AttributeError of a machine without libarchive13 (the symbol is looked up
in a library that lacks it); a path that does not exist gives the OSError variant."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("lib", [ctypes.util.find_library("c"), "/nonexistent/libarchive.so.13"])
def test_build_without_libarchive_says_what_to_install(kernel: Kernel, tmp_path: Path,
                                                       lib: str) -> None:
    env = {**os.environ, "LIBARCHIVE": lib, "PYTHONPATH": str(CHECKOUT)}
    out = tmp_path / "img"
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "build", "--kver", kernel.kver,
                        "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
                        "--target", "raw:/dev/vdb", "-o", str(out)],
                       env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "libarchive13" in lines[0] and "dnf install libarchive" in lines[0]
    assert not out.exists()


def test_help_still_works_without_libarchive() -> None:
    env = {**os.environ, "LIBARCHIVE": "/nonexistent/libarchive.so.13",
           "PYTHONPATH": str(CHECKOUT)}
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "--help"], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "build" in r.stdout, r.stderr
