"""pip cannot bring libarchive's C library. A build does not need it (image/writer.py writes
the newc records itself), nor does reading an image in the formats the stdlib and zstandard
decode; reading an lz4 or lzo image does, and without it says in one line what to install
(exit 1), instead of libarchive-c's `undefined symbol: archive_version_number`.

The library is hidden through libarchive-c's own LIBARCHIVE variable: pointing it at libc
gives exactly the AttributeError of a machine without libarchive13 (the symbol is looked up
in a library that lacks it); a path that does not exist gives the OSError variant."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("lib", [ctypes.util.find_library("c"), "/nonexistent/libarchive.so.13"])
def test_build_and_ls_without_libarchive(kernel: Kernel, tmp_path: Path, lib: str) -> None:
    env = {**os.environ, "LIBARCHIVE": lib, "PYTHONPATH": str(CHECKOUT)}
    out = tmp_path / "img"
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "build", "--kver", kernel.kver,
                        "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
                        "--target", "raw:/dev/vdb", "-o", str(out)],
                       env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "ls", str(out)], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "init" in r.stdout, r.stderr
    if shutil.which("lz4") is None:
        return
    # The same archive lz4-compressed (as the kernel reads it: legacy frames) needs libarchive.
    plain = tmp_path / "plain.img"
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "build", "--kver", kernel.kver,
                        "--kmoddir", str(kernel.kmoddir), "--no-hostonly", "--compress", "none",
                        "--target", "raw:/dev/vdb", "-o", str(plain)],
                       env=env, capture_output=True, text=True, check=True)
    lz4 = tmp_path / "lz4.img"
    lz4.write_bytes(subprocess.run(["lz4", "-l", "-q"], input=plain.read_bytes(),
                                   capture_output=True, check=True).stdout)
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "ls", str(lz4)], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "libarchive13" in lines[0] and "dnf install libarchive" in lines[0]


def test_help_still_works_without_libarchive() -> None:
    env = {**os.environ, "LIBARCHIVE": "/nonexistent/libarchive.so.13",
           "PYTHONPATH": str(CHECKOUT)}
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "--help"], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "build" in r.stdout, r.stderr
