"""pyproject.toml's lower bounds are the versions actually tested: they are Debian
bookworm's python3-* packages (jinja2 3.1.2, pyelftools 0.29, libarchive-c 2.9, zstandard
0.20.0, click 8.1.3). A venv with exactly those (cached under
/var/cache/mkkdumprd-tests, keyed by the pins) runs the tests of the code that calls into
them: the image writer and reader, module decompression, templates, a CLI build."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MKKDUMPRD_TEST_CACHE", "/var/cache/mkkdumprd-tests"))
# The tests that exercise the runtime libraries' APIs.
TESTS = ("tests/unit/test_image_writer.py", "tests/unit/test_image_reader.py",
         "tests/unit/test_build_freshness.py", "tests/unit/test_kmod_entries.py",
         "tests/unit/test_build_templates.py", "tests/unit/test_build_cli.py",
         "tests/unit/test_loader_kernel_image.py", "tests/unit/test_missing_libarchive.py")


def lowest_pins() -> list[str]:
    """`name==version` for every runtime dependency, from its `>=` lower bound."""
    deps = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", dep)
        assert m, f"runtime dependency {dep!r} needs a plain >= lower bound"
        pins.append(f"{m[1]}=={m[2]}")
    return pins


def test_the_listed_tests_exist() -> None:
    # A renamed test module would otherwise only show up as a failing pytest run inside.
    assert [t for t in TESTS if not (CHECKOUT / t).is_file()] == []


def test_lower_bounds_are_bookworms_versions() -> None:
    assert lowest_pins() == ["jinja2==3.1.2", "pyelftools==0.29", "libarchive-c==2.9",
                             "zstandard==0.20.0", "click==8.1.3"]


def _venv(pins: list[str]) -> Path:
    key = hashlib.sha256(f"{sys.version_info[:2]} {pins}".encode()).hexdigest()[:12]
    venv = CACHE / f"oldest-libs-{key}"
    py = venv / "bin/python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *pins, "pytest", "hypothesis"],
                       check=True)
        (venv / ".complete").touch()
    return py


@pytest.mark.slow  # ~40 s once the venv is cached; the first run also pip-installs (~1 min)
def test_runtime_tests_pass_on_the_lowest_versions() -> None:
    py = _venv(lowest_pins())
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    r = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-m", "not vm and not slow", *TESTS],
                       cwd=CHECKOUT, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, (r.stdout[-4000:] + r.stderr[-2000:]) or "pytest failed silently"
    versions = subprocess.run([str(py), "-c", "import libarchive, zstandard, importlib.metadata"
                               " as m; print(m.version('libarchive-c'), zstandard.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == ["2.9", "0.20.0"]
