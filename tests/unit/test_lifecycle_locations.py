"""One rule for where the capture image is: build's default output and the loader agree."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd import host as host_mod
from mkkdumprd.cli.build_cmd import default_output
from mkkdumprd.host import Host
from mkkdumprd.lifecycle import locations
from mkkdumprd.loader import locate

KVER = "6.1.0-99-amd64"
BOOT_IMG = PurePosixPath(f"/boot/initramfs-{KVER}kdump.img")
STATE_IMG = PurePosixPath(f"/var/lib/mkkdumprd/initramfs-{KVER}kdump.img")


def _read_only_boot(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    real = host_mod.os.access
    # As root, only a read-only mount makes access(2) say no; play that for /boot.
    monkeypatch.setattr(host_mod.os, "access",
                        lambda p, m: False if Path(p) == root / "boot" else real(p, m))


def _agree(host: Host, want: PurePosixPath) -> None:
    assert locations.capture_image(host, KVER) == want
    assert default_output(KVER, host) == host.path(want)
    assert locate.default_image(host, KVER) == want


def test_writable_boot(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    _agree(Host(tmp_path), BOOT_IMG)


def test_no_boot_or_read_only_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _agree(Host(tmp_path), STATE_IMG)
    (tmp_path / "boot").mkdir()
    _read_only_boot(monkeypatch, tmp_path)
    _agree(Host(tmp_path), STATE_IMG)


def test_loader_falls_back_to_the_other_place(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path)
    (tmp_path / "boot").mkdir()
    state = host.path(STATE_IMG)
    state.parent.mkdir(parents=True)
    state.write_bytes(b"x")
    # /boot writable but the image was built while it was not: load what exists
    assert locations.capture_image(host, KVER) == BOOT_IMG
    assert locate.default_image(host, KVER) == STATE_IMG
    # both exist: the one build writes now wins (the other may be stale)
    host.path(BOOT_IMG).write_bytes(b"y")
    assert locate.default_image(host, KVER) == BOOT_IMG
    _read_only_boot(monkeypatch, tmp_path)
    assert locate.default_image(host, KVER) == STATE_IMG
    assert locations.capture_image_candidates(host, KVER) == (STATE_IMG, BOOT_IMG)


def test_defaults() -> None:
    assert str(locations.CONFIG) == "/etc/kdump.conf"
    assert str(locations.LOCK_FILE) == "/run/mkkdumprd/lock"
