"""The .deb in clean Debian roots (bookworm and unstable, debootstrap minbase): installed
with apt from a local file repository, so every dependency comes from Debian's archive
(no pip, no venv); a kernel package install makes the capture image through the package's
/etc/kernel/postinst.d hook, removing the kernel deletes it, `mkkdumprd build` runs with
only the package's dependencies, and `apt-get purge --autoremove mkkdumprd` leaves nothing
of it (files, unit, hooks, state directory, generated images).

Unstable's kernels moved vmlinuz, config and System.map to /usr/lib/modules/KVER/ (and
split the image package); the hooks key on the modules directory, found in either place.

A chroot has no host devices, so kdump.conf names the target and hooks.conf sets
BUILD_ARGS=--no-hostonly, as an image builder would. Nothing is mounted, no service runs
(the package only enables the unit), and this machine's /boot is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.arch import load_arch
from mkkdumprd.host import Host
from mkkdumprd.image.reader import read_file, read_members
from mkkdumprd.loader.locate import find_kernel
from tests.support.debian_root import Recipe, apt, file_set, inside, unpack
from tests.support.packages import SYSTEM_PATH, build_deb

SUITES = (Recipe("bookworm", name="bookworm-minbase"), Recipe("unstable", name="unstable-minbase"))
KERNEL_META = "linux-image-cloud-amd64"
CONF = ("ext4 UUID=0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e\npath /var/crash\n"
        'dracut_args --add-drivers "virtio_pci virtio_blk ext4"\n')
# What apt and dpkg keep by design (their caches, lists, logs, status) and what is not a
# file of any package.
KEPT = ("/var/cache/", "/var/lib/apt/", "/var/lib/dpkg/", "/var/log/", "/tmp/", "/proc/",
        "/dev/", "/run/", "/srv/repo", "/etc/apt/sources.list.d/local.list",
        "/etc/resolv.conf", "/etc/apt/apt.conf.d/99mkkdumprd-tests", "/root/")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb"))


def _local_repository(root: Path, deb: Path) -> None:
    repo = root / "srv/repo"
    repo.mkdir(parents=True)
    shutil.copy(deb, repo)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo,
                              env={"PATH": SYSTEM_PATH}, capture_output=True, text=True,
                              check=True).stdout
    (repo / "Packages").write_text(packages)
    (root / "etc/apt/sources.list.d/local.list").write_text(
        "deb [trusted=yes] file:/srv/repo ./\n")


def _ours(paths: set[str]) -> set[str]:
    return {p for p in paths if "mkkdumprd" in p or "kdump" in p}


@pytest.mark.slow  # ~1 min per suite with warm caches (2 min for both, with the deb build);
# the first run debootstraps each root (bookworm ~4 min, unstable ~2 min) and downloads
@pytest.mark.parametrize("recipe", SUITES, ids=[r.suite for r in SUITES])
def test_deb_in_a_clean_root(recipe: Recipe, deb: Path, tmp_path: Path) -> None:
    root = unpack(recipe, tmp_path / "root")
    try:
        _check(recipe, root, deb)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check(recipe: Recipe, root: Path, deb: Path) -> None:
    before = file_set(root, KEPT)
    _local_repository(root, deb)
    inside(root, "apt-get", "update", "-q")
    apt(root, recipe, "install", "mkkdumprd")
    assert (root / "usr/bin/mkkdumprd").is_file()
    assert not list(root.glob("usr/lib/python3*/*-packages/pip")), "pip came along"
    assert (root / "etc/systemd/system/multi-user.target.wants/mkkdumprd.service").is_symlink()

    # Completion as shipped, answered by the installed mkkdumprd over Debian's python3-click.
    completed = inside(root, "bash", "-c", "source /usr/share/bash-completion/completions/"
                       "mkkdumprd; COMP_WORDS=(mkkdumprd cr); COMP_CWORD=1; "
                       "_mkkdumprd_completion mkkdumprd; echo \"${COMPREPLY[*]}\"").stdout
    assert completed.split() == ["crashkernel"], completed

    # The admin's configuration: an edited conffile and the hooks' settings.
    (root / "etc/kdump.conf").write_text(CONF)
    (root / "etc/mkkdumprd").mkdir()
    (root / "etc/mkkdumprd/hooks.conf").write_text("BUILD_ARGS=--no-hostonly\n")

    log = apt(root, recipe, "install", KERNEL_META)
    (kver,) = [p.name for p in (root / "usr/lib/modules").iterdir()]
    image = root / f"boot/initramfs-{kver}kdump.img"
    assert image.is_file(), f"the postinst.d hook built nothing for {kver}; apt said:\n{log}"
    assert "could not build" not in log, log
    assert f'"{kver}"' in read_file(image, "/etc/mkkdumprd/manifest.json").decode()
    assert any(m.path.endswith("virtio_blk.ko") for m in read_members(image))
    # The loader finds this kernel in either layout (read from here, through a Host:
    # nothing inside the chroot may reach for the host's crash kernel slot).
    kernel = find_kernel(Host(root), load_arch("x86_64"), kver)
    print(f"{recipe.suite}: {kver}, kernel {kernel}")

    # A build by hand, with only the package's dependencies in the root.
    built = inside(root, "mkkdumprd", "build", "--kver", kver, "--no-hostonly",
                   "-o", "/tmp/by-hand.img")
    assert (root / "tmp/by-hand.img").is_file(), built.stdout + built.stderr

    log = apt(root, recipe, "purge", "--autoremove", KERNEL_META, f"linux-image-{kver}")
    assert not image.exists(), f"the postrm.d hook left {image}; apt said:\n{log}"

    apt(root, recipe, "purge", "--autoremove", "mkkdumprd")
    after = file_set(root, KEPT)
    assert _ours(after) == set(), sorted(_ours(after))
    assert not list((root / "boot").glob("*kdump.img"))
    status = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f=${db:Status-Abbrev}",
                             "mkkdumprd"], capture_output=True, text=True, check=False)
    assert status.returncode != 0 or status.stdout.strip() in ("", "un"), status.stdout
    # Everything else the install brought in is gone with --autoremove, up to what the
    # kernel's own packages leave by policy (printed for the record, not ours).
    print("left besides ours:", sorted(after - before)[:40])
