"""The collection's roles run by ansible-playbook against three debootstrapped Debian roots
through community.general's chroot connection plugin: two hosts (a, b) with an ssh dump
target and one dump server (srv).

A chroot shares this machine's kernel, so the hosts run with mkkdumprd_offline: true (the
role refuses a chroot without it, checked here too): mkkdumprd is pip-installed from this
checkout's wheel, kdump.conf written and validated, the dump keys generated and
authorised on srv, srv's host key trusted, crashkernel= written into the root's grub
defaults, and the capture image built (--no-hostonly) for the root's own kernel; nothing
is loaded. Then: a second run changes nothing, a check run with a changed variable reports
changes without making them, a broken variable fails validation and leaves kdump.conf as
it was.

Nothing is mounted in the roots and no service runs (policy-rc.d forbids starts); the
dump address 192.0.2.10 (TEST-NET-1) is only written into files, never contacted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkkdumprd.image.reader import read_file
from tests.support.ansible_tools import REPO, collections_path, environment, recap, run, tool
from tests.support.debian_root import CACHE, Recipe, apt, locked, unpack
from tests.support.debian_root import run as run_checked

# The same recipe as test_debian_chroot.py (one cached base), plus the ssh client.
CLIENT = Recipe("bookworm", include=("python3", "python3-venv", "libarchive13",
                                     "busybox-static", "makedumpfile", "kmod", "linux-base",
                                     "initramfs-tools"))
SERVER = Recipe("bookworm", name="bookworm-minbase")
WHEELHOUSE = CACHE / "chroot-wheels"
KERNEL_META = "linux-image-cloud-amd64"
DUMP_ADDRESS = "192.0.2.10"

PLAYBOOK = """\
- name: Dump server
  hosts: dumpserver
  gather_facts: false
  roles:
    - mkkdumprd.kdump.dump_server

- name: Fleet
  hosts: fleet
  gather_facts: false
  vars:
    kdump_target: {type: ssh, location: "kdump@@ADDR@"}
    kdump_ssh_server: srv
    mkkdumprd_install_method: pip
    mkkdumprd_pip_extra_args: --no-index --find-links /tmp/wheels
    mkkdumprd_offline: true
    mkkdumprd_build_args: [--no-hostonly, --add-drivers, "virtio_pci,virtio_net"]
  roles:
    - mkkdumprd.kdump.mkkdumprd
""".replace("@ADDR@", DUMP_ADDRESS)


def _wheel(tmp_path: Path) -> Path:
    """This checkout's wheel; its dependencies' wheels for python3.11 into WHEELHOUSE."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "__pycache__", "*.egg-info", ".mypy_cache",
        ".ruff_cache", ".pytest_cache"))
    dist = tmp_path / "dist"
    run_checked([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)])
    (wheel,) = dist.glob("mkkdumprd-*.whl")
    with locked("chroot-wheels"):
        run_checked([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                     "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                     "--platform", "manylinux_2_17_x86_64", "-d", str(WHEELHOUSE), str(wheel)])
        for old in WHEELHOUSE.glob("mkkdumprd-*.whl"):
            old.unlink()
    return wheel


def _no_service_starts(root: Path) -> None:
    rc = root / "usr/sbin/policy-rc.d"
    rc.write_text("#!/bin/sh\nexit 101\n")
    rc.chmod(0o755)


def _client(tmp_path: Path, name: str, wheel: Path) -> Path:
    root = unpack(CLIENT, tmp_path / name)
    _no_service_starts(root)
    apt(root, CLIENT, "install", KERNEL_META, "openssh-client")
    drop = root / "tmp/wheels"
    shutil.copytree(WHEELHOUSE, drop)
    shutil.copy(wheel, drop)
    (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    return root


def _server(tmp_path: Path) -> Path:
    root = unpack(SERVER, tmp_path / "srv")
    _no_service_starts(root)
    apt(root, SERVER, "install", "openssh-server", "python3")
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)   # sshd -t wants it
    return root


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Path]]:
    if os.geteuid() != 0:
        pytest.skip("chroot(8) needs root")
    wheel = _wheel(tmp_path)
    roots = {"a": _client(tmp_path, "a", wheel), "srv": _server(tmp_path)}
    # b is a copy of a as prepared (its own key and image come from the play)
    run_checked(["cp", "-a", str(roots["a"]), str(tmp_path / "b")])
    roots["b"] = tmp_path / "b"
    yield roots
    for root in roots.values():
        shutil.rmtree(root, ignore_errors=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.fleet  # 7 min here under load, warm caches (three roots, a kernel
# install, two builds, five plays): outside the default run, `pytest -m fleet`
def test_fleet_converges_idempotent_checkable_and_validated(fleet: dict[str, Path],
                                                            tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[fleet]\n" + "".join(f"{h} ansible_host={fleet[h]}\n" for h in ("a", "b"))
        + f"[dumpserver]\nsrv ansible_host={fleet['srv']}\n"
        "[all:vars]\nansible_connection=community.general.chroot\n"
        "ansible_python_interpreter=/usr/bin/python3\n")
    playbook = tmp_path / "site.yml"
    playbook.write_text(PLAYBOOK)
    env = environment(collections_path(tmp_path))

    def play(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, int]]]:
        r = run([tool("ansible-playbook"), "-i", str(inventory), str(playbook), *args], env)
        return r, recap(r.stdout)

    first, stats = play()
    assert first.returncode == 0, first.stdout[-8000:] + first.stderr[-3000:]
    assert set(stats) == {"a", "b", "srv"}
    assert all(s["failed"] == 0 and s["changed"] > 0 for s in stats.values()), stats

    conf = {h: fleet[h] / "etc/kdump.conf" for h in ("a", "b")}
    pubs = {h: (fleet[h] / "root/.ssh/kdump_id_rsa.pub").read_text().strip() for h in ("a", "b")}
    assert pubs["a"] != pubs["b"]
    srv = fleet["srv"]
    authorized = (srv / "var/lib/kdump/.ssh/authorized_keys").read_text().splitlines()
    assert sorted(authorized) == sorted(pubs.values())
    host_key = (srv / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert (srv / "usr/local/libexec/mkkdumprd-dump-only").is_file()
    assert "ForceCommand /usr/local/libexec/mkkdumprd-dump-only /var/crash" in \
        (srv / "etc/ssh/sshd_config.d/mkkdumprd.conf").read_text()
    for h in ("a", "b"):
        text = conf[h].read_text()
        assert f"\nssh kdump@{DUMP_ADDRESS}\n" in text
        assert "\nsshkey /root/.ssh/kdump_id_rsa\n" in text
        known = (fleet[h] / "etc/ssh/ssh_known_hosts").read_text()
        assert f"{DUMP_ADDRESS} {host_key[0]} {host_key[1]}" in known
        assert "crashkernel=" in (fleet[h] / "etc/default/grub.d/mkkdumprd.cfg").read_text()
        (kver,) = os.listdir(fleet[h] / "lib/modules")
        image = fleet[h] / f"boot/initramfs-{kver}kdump.img"
        assert image.is_file(), f"no capture image in {h}"
        assert f"ssh kdump@{DUMP_ADDRESS}".encode() in read_file(image, "/etc/kdump.conf")

    second, stats = play()
    assert second.returncode == 0, second.stdout[-8000:]
    assert all(s["changed"] == 0 and s["failed"] == 0 for s in stats.values()), \
        (stats, second.stdout[-8000:])

    before = {h: _sha(conf[h]) for h in conf}
    checked, stats = play("--check", "--diff", "-e", "kdump_path=/var/crash/elsewhere")
    assert checked.returncode == 0, checked.stdout[-8000:]
    assert stats["a"]["changed"] > 0 and stats["b"]["changed"] > 0, stats
    assert "+path /var/crash/elsewhere" in checked.stdout
    assert {h: _sha(conf[h]) for h in conf} == before
    assert not (srv / "var/crash/elsewhere").exists()

    broken, stats = play("-e", "kdump_system_action=explode", "--limit", "a")
    assert broken.returncode != 0 and stats["a"]["failed"] == 1, broken.stdout[-8000:]
    assert "failed to validate" in broken.stdout, broken.stdout[-8000:]
    assert _sha(conf["a"]) == before["a"]

    refused, stats = play("-e", "mkkdumprd_offline=false", "--limit", "b")
    assert refused.returncode != 0 and stats["b"]["failed"] == 1
    assert "shares the kernel" in refused.stdout
    assert _sha(conf["b"]) == before["b"]
