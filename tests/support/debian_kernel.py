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
        # Debian's kernels from 7.2 ship vmlinuz (and config) in the modules directory only.
        legacy = self.root / "boot" / f"vmlinuz-{self.kver}"
        return legacy if legacy.exists() else self.modules_dir / "vmlinuz"

    @property
    def modules_dir(self) -> Path:
        usr = self.root / "usr" / "lib" / "modules" / self.kver
        return usr if usr.is_dir() else self.root / "lib" / "modules" / self.kver

    @property
    def kmoddir(self) -> Path:
        return self.modules_dir

    @property
    def config(self) -> Path:
        legacy = self.root / "boot" / f"config-{self.kver}"
        return legacy if legacy.exists() else self.modules_dir / "config"


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


def debian_sid_kernel(flavour: str = "cloud-amd64") -> Kernel:
    """Debian unstable's newest kernel (7.x), through the private sid apt configuration of
    tests/support/foreign_sysroot.py. Its packaging splits the image: linux-image-KVER is
    empty and depends on linux-binary-KVER (only /usr/lib/modules/KVER/vmlinuz),
    linux-modules-KVER and linux-base-KVER (config, System.map, modules.builtin*); all
    three are extracted into one root, with /lib -> usr/lib as on a merged-/usr system."""
    from tests.support.foreign_sysroot import _SID, _Apt

    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        apt = _Apt(CACHE / "apt-sid-amd64", "amd64", _SID)
        lists = CACHE / "apt-sid-amd64" / "lists"
        if not any(lists.glob("*Packages*")):
            apt.update()
        image = apt.kernel_package(f"linux-image-{flavour}")
        kver = image.removeprefix("linux-image-")
        root = CACHE / "kernels" / kver
        done = root / ".ready"
        if not done.exists():
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            for part in ("linux-binary", "linux-modules", "linux-base"):
                pkg = f"{part}-{kver}"
                cached = sorted((CACHE / "apt-sid-amd64" / "debs").glob(f"{pkg}_*.deb"))
                deb = cached[-1] if cached else apt.download(pkg)
                _run(["dpkg-deb", "-x", str(deb), str(root)])
            if not (root / "lib").exists():
                (root / "lib").symlink_to("usr/lib")
            _run(["depmod", "-b", str(root), kver])
            done.touch()
        return Kernel(root=root, kver=kver)
