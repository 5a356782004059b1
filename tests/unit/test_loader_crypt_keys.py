"""The loader hands LUKS volume keys to the kernel through configfs (CONFIG_CRASH_DM_CRYPT):
items exist while kexec_file_load runs and are gone after; on fake trees and a fake syscall."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.loader import crypt_keys

U = "c0ffee00-c0ff-ee00-c0ff-ee00c0ffee00"
MANIFEST = {"modules": ["kdump", "crypt"], "config": {"target": {"luks": [U, "bad;x"]}}}


def test_items_exist_only_during_the_load(tmp_path: Path) -> None:
    base = tmp_path / crypt_keys.CONFIG_DIR.lstrip("/")
    base.mkdir(parents=True)
    seen: list[str] = []
    with crypt_keys.handed_over(Host(tmp_path), [U]):
        seen.append((base / U / "description").read_text())
    assert seen == [f"kdump-cryptsetup:vk-{U}"]
    assert not (base / U).exists()


def test_items_are_removed_when_the_load_fails(tmp_path: Path) -> None:
    base = tmp_path / crypt_keys.CONFIG_DIR.lstrip("/")
    base.mkdir(parents=True)
    with pytest.raises(OSError), crypt_keys.handed_over(Host(tmp_path), [U]):
        raise OSError(errno.ENOKEY, "no key")
    assert list(base.iterdir()) == []
    msg = crypt_keys.load_error(OSError(errno.ENOKEY, "x"), [U])
    assert msg is not None and f"kdump-cryptsetup:vk-{U}" in msg and "--link-vk-to-keyring" in msg
    assert crypt_keys.load_error(OSError(errno.ENOMEM, "x"), [U]) is None


def test_missing_configfs_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="lacks CONFIG_CRASH_DM_CRYPT"), \
            crypt_keys.handed_over(Host(tmp_path), [U]):
        pass
    with crypt_keys.handed_over(Host(tmp_path), []):   # no LUKS: nothing is touched
        pass


def test_which_volumes(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert crypt_keys.volumes_for(host, MANIFEST) == [U]       # malformed entries dropped
    assert crypt_keys.volumes_for(host, {"modules": ["kdump"]}) == []
    assert crypt_keys.volumes_for(host, None) == []
    # --add crypt: no layout recorded; the LUKS volumes open on this machine.
    d = tmp_path / "sys/devices/virtual/block/dm-0/dm"
    d.mkdir(parents=True)
    (d / "uuid").write_text(f"CRYPT-LUKS2-{'c0ffee00' * 4}-luks\n")
    (tmp_path / "sys/class/block").mkdir(parents=True)
    (tmp_path / "sys/class/block/dm-0").symlink_to("../../devices/virtual/block/dm-0")
    assert crypt_keys.volumes_for(host, {"modules": ["crypt"], "config": {"target": {}}}) == [U]


def test_an_unreadable_manifest_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A loader without the image reader cannot tell which volumes the image opens: with a
    # LUKS volume open it goes by the --add crypt rule where the kernel takes keys, and
    # says so; where it cannot, it says the capture kernel gets no key.
    host = Host(tmp_path)
    assert crypt_keys.unread_manifest(host, "/boot/x.img", "no zstandard") is None
    assert capsys.readouterr().err == ""        # no LUKS open: nothing to say
    d = tmp_path / "sys/devices/virtual/block/dm-0/dm"
    d.mkdir(parents=True)
    (d / "uuid").write_text(f"CRYPT-LUKS2-{'c0ffee00' * 4}-luks\n")
    (tmp_path / "sys/class/block").mkdir(parents=True)
    (tmp_path / "sys/class/block/dm-0").symlink_to("../../devices/virtual/block/dm-0")
    assert crypt_keys.unread_manifest(host, "/boot/x.img", "no zstandard") is None
    err = capsys.readouterr().err
    assert "capture kernel gets no key" in err and f"vk-{U}" in err and "x.img" in err
    (tmp_path / crypt_keys.CONFIG_DIR.lstrip("/")).mkdir(parents=True)
    manifest = crypt_keys.unread_manifest(host, "/boot/x.img", "no zstandard")
    assert crypt_keys.volumes_for(host, manifest) == [U]
    assert "handing over the keys of every open LUKS volume" in capsys.readouterr().err
