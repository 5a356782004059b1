"""The wheel is the product: built from a copy of the checkout, installed into a fresh venv
(dependencies from PyPI), it runs `mkkdumprd --help` and `mkkdumprd ls` from elsewhere and
carries modules.d, templates and arch as package data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mkkdumprd.image.spec import ImageSpec, data_entry, symlink_entry
from mkkdumprd.image.writer import write_image

CHECKOUT = Path(__file__).resolve().parents[2]
DATA_DIRS = ("modules.d", "templates", "arch", "packaging")
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
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("mkkdumprd-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    for folder in DATA_DIRS:
        shipped = [n for n in names if n.startswith(f"mkkdumprd/data/{folder}/")]
        assert shipped, f"the wheel lacks mkkdumprd/data/{folder}/"
        in_checkout = sorted(
            p.relative_to(CHECKOUT / folder).as_posix()
            for p in (CHECKOUT / folder).rglob("*")
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
    exe = str(venv / "bin/mkkdumprd")
    helped = subprocess.run([exe, "--help"], cwd=work, capture_output=True, text=True,
                            check=True)
    assert "Usage: mkkdumprd" in helped.stdout
    assert " ls " in helped.stdout

    spec = ImageSpec()
    spec.add(data_entry("/init", "#!/bin/sh\n", "init", mode=0o755))
    spec.add(symlink_entry("/bin", "usr/bin", "merged /usr"))
    img = work / "initrd.img"
    write_image(spec, img)
    listed = subprocess.run([exe, "ls", "--json", str(img)], cwd=work, capture_output=True,
                            text=True, check=True)
    assert [d["path"] for d in json.loads(listed.stdout)] == ["/bin", "/init"]

    where = subprocess.run(
        [str(venv / "bin/python"), "-c",
         "from mkkdumprd.resources import data_dir; print(data_dir('modules.d'))"],
        cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where
