"""The wheel is the product: built from a copy of the checkout, installed into a fresh venv
(dependencies from PyPI), it runs `mkkdumprd --help` and `mkkdumprd ls` from elsewhere and
carries mkkdumprd/data/ (modules.d, templates, arch, packaging) as package data, without
bytecode left in the checkout and read from the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mkkdumprd.image.spec import ImageSpec, data_entry, symlink_entry
from mkkdumprd.image.writer import write_image
from mkkdumprd.resources import DATA_DIRS

CHECKOUT = Path(__file__).resolve().parents[2]
DATA = CHECKOUT / "mkkdumprd" / "data"
_IGNORE_ANYWHERE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".mypy_cache",
                                          ".ruff_cache", ".pytest_cache", "*.pyc")
# Only at the top: mkkdumprd/assemble/ is a package, not a build directory.
_IGNORE_AT_TOP = {".venv", ".git", "build", "dist"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    ignored = set(_IGNORE_ANYWHERE(directory, names))
    if Path(directory) == CHECKOUT:
        ignored |= _IGNORE_AT_TOP & set(names)
    return ignored


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(CHECKOUT, src, ignore=_ignore, symlinks=True)
    # Bytecode beside a hooks.py (left by a test run in a checkout) must not be shipped.
    stale = src / "mkkdumprd" / "data" / "modules.d" / "kdump" / "__pycache__"
    stale.mkdir()
    (stale / "hooks.cpython-311.pyc").write_bytes(b"stale")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("mkkdumprd-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "mkkdumprd/data/README.md" in names
    for folder in DATA_DIRS:
        shipped = [n for n in names if n.startswith(f"mkkdumprd/data/{folder}/")]
        assert shipped, f"the wheel lacks mkkdumprd/data/{folder}/"
        in_checkout = sorted(
            p.relative_to(DATA / folder).as_posix()
            for p in (DATA / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        assert sorted(n.split(f"mkkdumprd/data/{folder}/", 1)[1] for n in shipped) == in_checkout
    packages = {p.parent.relative_to(CHECKOUT).as_posix()
                for p in (CHECKOUT / "mkkdumprd").rglob("__init__.py")}
    assert packages <= {n.rsplit("/", 1)[0] for n in names}, "a package is missing"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", str(wheel)], check=True,
                   capture_output=True)

    work = tmp_path / "elsewhere"
    work.mkdir()
    # The installed wheel alone: a PYTHONPATH naming a checkout (as for running the suite
    # from a worktree) would shadow it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exe = str(venv / "bin/mkkdumprd")
    helped = subprocess.run([exe, "--help"], cwd=work, env=env, capture_output=True, text=True,
                            check=True)
    assert "Usage: mkkdumprd" in helped.stdout
    assert " ls " in helped.stdout

    spec = ImageSpec()
    spec.add(data_entry("/init", "#!/bin/sh\n", "init", mode=0o755))
    spec.add(symlink_entry("/bin", "usr/bin", "merged /usr"))
    img = work / "initrd.img"
    write_image(spec, img)
    listed = subprocess.run([exe, "ls", "--json", str(img)], cwd=work, env=env, capture_output=True,
                            text=True, check=True)
    assert [d["path"] for d in json.loads(listed.stdout)] == ["/bin", "/init"]

    where = subprocess.run(
        [str(venv / "bin/python"), "-c",
         "from mkkdumprd.arch import ARCHES, load_arch\n"
         "from mkkdumprd.assemble.moduledef import load_all\n"
         "from mkkdumprd.resources import DATA_DIRS, data_dir\n"
         "assert 'kdump' in load_all(data_dir('modules.d'))\n"
         "assert all(load_arch(a).name == a for a in ARCHES)\n"
         "for name in DATA_DIRS: print(data_dir(name))"],
        cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert len(where) == len(DATA_DIRS)
    assert all(Path(w).is_relative_to(venv) for w in where), where
