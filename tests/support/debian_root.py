"""Debootstrapped Debian roots for tests that install packages into them: made once per
suite and recipe, cached as a tarball under $MKKDUMPRD_TEST_CACHE
(/var/cache/mkkdumprd-tests), unpacked per test; commands run inside with chroot(8).

Nothing is mounted in the root (dpkg, apt and the kernel hooks need no /proc), and
nothing inside can reach this machine's /boot or its crash kernel slot: every path is under
the test's directory, and the packages' scripts only stop services through systemd, which
does not run in a chroot. Downloads come from deb.debian.org only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MKKDUMPRD_TEST_CACHE", "/var/cache/mkkdumprd-tests"))
MIRROR = "http://deb.debian.org/debian"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8", "HOME": "/root"}


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-4000:]}\n"
                             f"{r.stderr[-4000:]}")
    return r


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise test processes filling the same cache entry."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".lock-{name}", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class Recipe:
    suite: str
    include: tuple[str, ...] = ()
    name: str = ""  # the cache entry: chroot-NAME.tar (default: the suite)

    @property
    def tarball(self) -> Path:
        return CACHE / f"chroot-{self.name or self.suite}.tar"

    @property
    def debs(self) -> Path:
        """Where .debs downloaded inside roots of this recipe are kept between tests."""
        return CACHE / f"chroot-{self.name or self.suite}-debs"

    def text(self) -> str:
        inc = f" --include={','.join(self.include)}" if self.include else ""
        return f"debootstrap --variant=minbase{inc} {self.suite} {MIRROR}\n"


def base_tarball(recipe: Recipe) -> Path:
    """The debootstrapped tree as a tar (made once; 1.5-3 min, ~200 MB)."""
    tar = recipe.tarball
    stamp = tar.with_suffix(".recipe")
    with locked(tar.stem):
        if tar.is_file() and stamp.is_file() and stamp.read_text() == recipe.text():
            return tar
        if shutil.which("debootstrap") is None:
            raise AssertionError("debootstrap is missing (dev/setup installs it)")
        work = CACHE / tar.stem
        shutil.rmtree(work, ignore_errors=True)
        inc = [f"--include={','.join(recipe.include)}"] if recipe.include else []
        run(["debootstrap", "--variant=minbase", *inc, recipe.suite, str(work), MIRROR])
        for deb in (work / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        tmp = tar.with_suffix(".tar.tmp")
        run(["tar", "-C", str(work), "--numeric-owner", "-cf", str(tmp), "."])
        tmp.replace(tar)
        stamp.write_text(recipe.text())
        shutil.rmtree(work)
    return tar


def unpack(recipe: Recipe, root: Path) -> Path:
    root.mkdir()
    run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(base_tarball(recipe))])
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    # unstable's Release has a Valid-Until a week ahead; a mirror (or a cached base) older
    # than that is refused by apt-get update without this.
    (root / "etc/apt/apt.conf.d/99mkkdumprd-tests").write_text(
        'Acquire::Check-Valid-Until "false";\n')
    return root


def inside(root: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return run(["chroot", str(root), *cmd], env=ENV)


def apt(root: Path, recipe: Recipe, *args: str) -> str:
    """apt-get -y ARGS inside, with the recipe's downloaded .debs reused and kept."""
    archives = root / "var/cache/apt/archives"
    recipe.debs.mkdir(parents=True, exist_ok=True)
    for deb in recipe.debs.glob("*.deb"):
        shutil.copy(deb, archives)
    cmd = ["apt-get", "-y", "-q", "--no-install-recommends", *args]
    r = subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, env=ENV,
                       check=False)
    if r.returncode != 0 and ("404" in r.stderr or "Unable to fetch" in r.stderr
                              or "Unable to locate" in r.stderr):
        # The base's package lists are older than the mirror: refresh them once.
        inside(root, "apt-get", "update", "-q")
        r = subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True,
                           env=ENV, check=False)
    for deb in archives.glob("*.deb"):
        if not (recipe.debs / deb.name).exists():
            shutil.copy(deb, recipe.debs)
    assert r.returncode == 0, f"apt-get {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr}"
    return r.stdout + r.stderr


def file_set(root: Path, skip: tuple[str, ...]) -> set[str]:
    """Every path under root (as /PATH), except under the `skip` prefixes."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root).removeprefix(".").lstrip("/")
        if rel.startswith(skip):
            dirnames[:] = []
            continue
        for name in (*dirnames, *filenames):
            path = f"{rel.rstrip('/')}/{name}"
            if not path.startswith(skip):
                out.add(path)
    return out
