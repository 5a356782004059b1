"""libarchive's C library is found by its soname first (no `ldconfig -p`), and when that
name does not load, by libarchive-c's own search; LIBARCHIVE is not left set for the
commands a build runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
PROBE = """\
import os, subprocess, sys
import mkkdumprd.image.libarchive_abi as abi
if len(sys.argv) > 1:
    abi.SONAME = sys.argv[1]
calls = []
real = subprocess.Popen.__init__
def spy(self, args, *a, **kw):
    calls.append(args)
    real(self, args, *a, **kw)
subprocess.Popen.__init__ = spy
lib, ffi = abi.require()
print(lib.__name__, os.environ.get("LIBARCHIVE"), any("ldconfig" in str(c) for c in calls))
"""


@pytest.mark.parametrize(("soname", "ldconfig"), [(None, False),
                                                  ("libnonexistent-archive.so.99", True)])
def test_found_by_soname_or_else_the_binding_s_way(soname: str | None, ldconfig: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LIBARCHIVE"}
    env["PYTHONPATH"] = str(CHECKOUT)
    r = subprocess.run([sys.executable, "-c", PROBE, *([soname] if soname else [])], env=env,
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["libarchive", "None", str(ldconfig)], r.stderr
