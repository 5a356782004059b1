"""Running the product's CLI as an unprivileged user (nobody) from this checkout.

The test interpreter may live where nobody cannot read it (pyenv under /root), so the
child is the system's python3 of the same minor version, with this checkout and the test
venv's site-packages on PYTHONPATH. Files the child must reach go in `world_dir()`, not in
pytest's tmp_path (0700). MKKDUMPRD_FORBID_KEXEC is set in the child as in every test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def require() -> None:
    """Skip unless this test runs as root with setpriv and a matching system python."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    if not SYSTEM_PYTHON.is_file():
        pytest.skip(f"needs {SYSTEM_PYTHON} (the test interpreter's version)")


@contextmanager
def world_dir() -> Iterator[Path]:
    """A directory root owns that nobody may read and enter (not write)."""
    d = Path(tempfile.mkdtemp(prefix="mkkdumprd-nobody-", dir="/tmp"))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 120,
            stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8",
           "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}",
           "MKKDUMPRD_FORBID_KEXEC": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         str(SYSTEM_PYTHON), "-m", "mkkdumprd", *args],
        cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout,
        check=False)
