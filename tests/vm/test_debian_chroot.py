"""A real Debian client: the kernel hooks build and delete capture images during apt runs.

A minimal Debian bookworm (debootstrap --variant=minbase, cached as a tarball and unpacked
per test) gets mkkdumprd the way a user without a package would install it: the wheel of
this checkout pip-installed into a venv inside the chroot, then `mkkdumprd
install-integration`, which puts the Debian hooks from the wheel's data into
/etc/kernel/post{inst,rm}.d. Then `apt-get install linux-image-cloud-amd64` inside the chroot
must leave /boot/initramfs-KVERkdump.img for the kernel it installed (built by the hook that
the kernel's postinst runs), running the hook again must find it up to date, and `apt-get
purge` of the kernel must delete it.

A chroot has no host devices to look at, so the chroot's kdump.conf names its target and
/etc/mkkdumprd/hooks.conf sets BUILD_ARGS=--no-hostonly, as an image builder would. Nothing
is mounted in the chroot (dpkg and the hooks need no /proc); this machine's /boot is never
touched: every path is under the test's directory.

Downloads come from the package registries (deb.debian.org for the chroot and the kernel,
pip's configured index for the wheels) and are cached in $MKKDUMPRD_TEST_CACHE
(/var/cache/mkkdumprd-tests): the base tarball, the kernel's .debs and the wheels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkkdumprd.image.reader import read_file, read_members
from tests.support.debian_root import CACHE, Recipe, apt, inside, locked, run, unpack

REPO = Path(__file__).resolve().parents[2]
# What the chroot needs besides minbase: python for the venv, libarchive for libarchive-c,
# the dump tools the image carries, and the kernel package's own dependencies (installed
# here once instead of in every test).
RECIPE = Recipe("bookworm", include=("python3", "python3-venv", "libarchive13",
                                     "busybox-static", "makedumpfile", "kmod", "linux-base",
                                     "initramfs-tools"))
WHEELHOUSE = CACHE / "chroot-wheels"
KERNEL_META = "linux-image-cloud-amd64"
VENV = "/opt/mkkdumprd"
CONF = ("ext4 UUID=0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e\npath /var/crash\n"
        'dracut_args --add-drivers "virtio_pci virtio_blk ext4"\n')


def wheels(tmp_path: Path) -> Path:
    """This checkout's wheel plus binary wheels of its dependencies for python3.11."""
    src = tmp_path / "src"
    skip_top = {".venv", ".git", "build", "dist"}

    def ignore(directory: str, names: list[str]) -> set[str]:
        out = {n for n in names if n in ("__pycache__", ".mypy_cache", ".ruff_cache",
                                         ".pytest_cache") or n.endswith((".pyc", ".egg-info"))}
        return out | (skip_top & set(names) if Path(directory) == REPO else set())

    shutil.copytree(REPO, src, ignore=ignore, symlinks=True)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)])
    (wheel,) = dist.glob("mkkdumprd-*.whl")
    with locked("chroot-wheels"):
        run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
             "--platform", "manylinux_2_17_x86_64", "-d", str(WHEELHOUSE), str(wheel)])
        for old in WHEELHOUSE.glob("mkkdumprd-*.whl"):
            old.unlink()
    return wheel


@pytest.fixture
def chroot(tmp_path: Path) -> Iterator[Path]:
    root = unpack(RECIPE, tmp_path / "chroot")
    yield root
    # ~450 MB once the kernel is in; pytest would keep three of them around.
    shutil.rmtree(root, ignore_errors=True)


def _in(chroot: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return inside(chroot, *cmd)


def _apt(chroot: Path, *args: str) -> str:
    return apt(chroot, RECIPE, *args)


@pytest.mark.slow
def test_kernel_install_and_purge_in_a_debian_chroot(chroot: Path, tmp_path: Path) -> None:
    wheel = wheels(tmp_path)
    drop = chroot / "tmp/wheels"
    shutil.copytree(WHEELHOUSE, drop)
    shutil.copy(wheel, drop)
    _in(chroot, "python3", "-m", "venv", VENV)
    _in(chroot, f"{VENV}/bin/pip", "install", "--quiet", "--no-index",
        "--find-links", "/tmp/wheels", f"/tmp/wheels/{wheel.name}")

    # The documented command for installs without a package, run inside the client.
    out = _in(chroot, f"{VENV}/bin/mkkdumprd", "install-integration").stdout
    # minbase has /etc/systemd/system (no systemd running), so the unit comes along.
    installed = [
        "/etc/systemd/system/mkkdumprd.service",
        "/etc/systemd/system/mkkdumprd-pstore.service",
        "/etc/systemd/system-generators/mkkdumprd-generator",
        "/etc/kernel/postinst.d/mkkdumprd",
        "/etc/kernel/postrm.d/mkkdumprd",
        "/etc/udev/rules.d/98-mkkdumprd.rules",
        "/etc/mkkdumprd/hooks.conf",
    ]
    assert out.splitlines() == [f"installed  {p}" for p in installed], out
    again = _in(chroot, f"{VENV}/bin/mkkdumprd", "install-integration").stdout
    assert again.splitlines() == [f"unchanged  {p}" for p in installed], again
    hooks_conf = chroot / "etc/mkkdumprd/hooks.conf"
    assert f"MKKDUMPRD={VENV}/bin/mkkdumprd\n" in hooks_conf.read_text()
    with hooks_conf.open("a") as f:
        f.write("BUILD_ARGS=--no-hostonly\n")
    (chroot / "etc/kdump.conf").write_text(CONF)

    log = _apt(chroot, "install", KERNEL_META)
    kvers = os.listdir(chroot / "lib/modules")
    assert len(kvers) == 1, kvers
    kver = kvers[0]
    assert kver.endswith("-cloud-amd64")
    image = chroot / f"boot/initramfs-{kver}kdump.img"
    assert image.is_file(), f"the postinst.d hook built nothing for {kver}; apt said:\n{log}"
    assert "could not build" not in log, log
    manifest = read_file(image, "/etc/mkkdumprd/manifest.json").decode()
    assert f'"{kver}"' in manifest
    paths = {m.path for m in read_members(image)}
    assert "/init" in paths and any(p.endswith("/virtio_blk.ko") or "virtio_blk.ko" in p
                                    for p in paths), sorted(paths)[:50]
    assert b"UUID=0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e" in read_file(image, "/etc/kdump.conf")

    # The hook again (as a reinstall would run it): exit 0, the image is up to date.
    before = image.stat()
    rerun = _in(chroot, "/etc/kernel/postinst.d/mkkdumprd", kver, f"/boot/vmlinuz-{kver}")
    assert "could not build" not in rerun.stderr, rerun.stderr
    after = image.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    log = _apt(chroot, "purge", f"linux-image-{kver}", KERNEL_META)
    assert not (chroot / f"lib/modules/{kver}").exists()
    assert not image.exists(), f"the postrm.d hook left {image}; apt said:\n{log}"
    assert list((chroot / "boot").glob("*kdump.img")) == []
