"""Real Debian kernels for the tests: downloaded once from the package registry, cached.

`debian_kernel()` returns an extracted, depmod'ed linux-image package (the one that
`linux-image-amd64` depends on). The cache lives in $MKKDUMPRD_TEST_CACHE or
/var/cache/mkkdumprd-tests, so repeated runs and CI reruns on the same machine reuse it.
A lock file serialises concurrent test processes doing the first extraction.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MKKDUMPRD_TEST_CACHE", "/var/cache/mkkdumprd-tests"))


@dataclass(frozen=True)
class Kernel:
    root: Path          # extracted package root (has boot/ and lib/modules/)
    kver: str
    arch: str = "x86_64"

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.kver}"

    @property
    def kmoddir(self) -> Path:
        return self.root / "lib" / "modules" / self.kver


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def _image_package(meta: str) -> str:
    """The concrete linux-image-X package that the metapackage `meta` depends on."""
    out = _run(["apt-cache", "depends", meta])
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    raise RuntimeError(f"apt-cache depends {meta} names no linux-image package:\n{out}")


def _download(pkg: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{pkg}_*.deb"))
    if found:
        return found[-1]
    try:
        _run(["apt-get", "download", pkg], cwd=dest)
    except subprocess.CalledProcessError:
        # A stale package list names a version the mirror no longer has.
        _run(["apt-get", "update", "-q"])
        _run(["apt-get", "download", pkg], cwd=dest)
    found = sorted(dest.glob(f"{pkg}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {pkg} left no .deb in {dest}")
    return found[-1]


def debian_kernel(meta: str = "linux-image-amd64") -> Kernel:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pkg = _image_package(meta)
        kver = pkg.removeprefix("linux-image-")
        root = CACHE / "kernels" / kver
        done = root / ".ready"
        if not done.exists():
            deb = _download(pkg, CACHE / "debs")
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            _run(["dpkg-deb", "-x", str(deb), str(root)])
            _run(["depmod", "-b", str(root), kver])
            done.touch()
        return Kernel(root=root, kver=kver)
