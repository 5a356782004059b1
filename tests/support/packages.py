"""Build mkkdumprd's .deb and .rpm from a copy of the checkout (dpkg-buildpackage and
rpmbuild write beside and inside the source tree; the checkout stays untouched).

Both run with Debian's own interpreter first on PATH (/usr/bin/python3 with the python3-*
packages), as a Debian build machine would, not the venv's or a pyenv python."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
_IGNORE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache",
                                 ".pytest_cache", "*.pyc", ".venv", ".git", ".pybuild",
                                 ".hypothesis")


def source_copy(dest: Path) -> Path:
    src = dest / "mkkdumprd-src"
    shutil.copytree(CHECKOUT, src, ignore=_IGNORE, symlinks=True)
    for top in ("build", "dist", "out"):
        shutil.rmtree(src / top, ignore_errors=True)
    return src


def build_deb(dest: Path) -> Path:
    """dpkg-buildpackage -us -uc -b; returns the .deb (beside the copy, as dpkg puts it)."""
    src = source_copy(dest)
    r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src,
                       env={"PATH": SYSTEM_PATH, "HOME": str(dest), "LC_ALL": "C.UTF-8"},
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (deb,) = dest.glob("mkkdumprd_*_all.deb")
    return deb


def build_rpm(dest: Path) -> Path:
    """rpmbuild -bb mkkdumprd/data/packaging/rpm/mkkdumprd.spec from a tarball of the checkout, with
    Fedora's macros that Debian's rpm lacks (rpm-fedora.macros) and --nodeps (the
    BuildRequires name Fedora's packages, which no Debian rpm database lists)."""
    import tarfile

    src = source_copy(dest)
    version = "0.1.0"
    for line in (src / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            version = line.split('"')[1]
    top = dest / "rpmbuild"
    (top / "SOURCES").mkdir(parents=True)
    with tarfile.open(top / "SOURCES" / f"mkkdumprd-{version}.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=f"mkkdumprd-{version}")
    spec = src / "mkkdumprd/data/packaging/rpm/mkkdumprd.spec"
    macros = Path(__file__).with_name("rpm-fedora.macros")
    r = subprocess.run(["rpmbuild", "-bb", "--nodeps", "--load", str(macros),
                        "--define", f"_topdir {top}", str(spec)],
                       env={"PATH": SYSTEM_PATH, "HOME": str(dest), "LC_ALL": "C.UTF-8"},
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (rpm,) = (top / "RPMS/noarch").glob(f"mkkdumprd-{version}-*.noarch.rpm")
    return rpm
