"""Whole-image verification (issue 14 item 2): the digest of the image as written is
recorded beside it; a truncated image or one with an appended cpio segment is never "up to
date", and the loader refuses images that someone other than root owns or may write."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError
from mkkdumprd.host import HostView
from mkkdumprd.image import integrity
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image
from mkkdumprd.loader import load as loader
from tests.unit.test_build_freshness import Setup
from tests.unit.test_loader_load import KVER, X86, FakeKexec, root, vmlinuz  # noqa: F401


def _image(tmp_path: Path) -> Path:
    spec = ImageSpec()
    spec.add(data_entry("/init", b"#!/bin/sh\n" * 500, "init", mode=0o755))
    img = tmp_path / "kdump.img"
    stats = write_image(spec, img, compression=Compression.ZSTD)
    assert stats.sha256 == hashlib.sha256(img.read_bytes()).hexdigest()
    return img


def test_the_record_is_sha256sum_compatible(tmp_path: Path) -> None:
    img = _image(tmp_path)
    assert integrity.verify(img) is None
    rec = integrity.record_path(img)
    assert rec.name == "kdump.img.sha256"
    assert oct(rec.stat().st_mode & 0o777) == "0o600"
    res = subprocess.run(["sha256sum", "-c", rec.name], cwd=tmp_path, capture_output=True,
                         text=True)
    assert res.returncode == 0 and "kdump.img: OK" in res.stdout


def test_truncated_appended_or_unrecorded_images_fail(tmp_path: Path) -> None:
    img = _image(tmp_path)
    whole = img.read_bytes()
    img.write_bytes(whole[: len(whole) * 6 // 10])
    assert "is not the file its build wrote" in (integrity.verify(img) or "")
    img.write_bytes(whole + b"070701" + b"0" * 104)
    assert "is not the file its build wrote" in (integrity.verify(img) or "")
    img.write_bytes(whole)
    assert integrity.verify(img) is None
    rec = integrity.record_path(img)
    rec.write_text("0" * 64 + "  other.img\n")
    assert "has no valid digest record" in (integrity.verify(img) or "")
    rec.unlink()
    assert "has no valid digest record" in (integrity.verify(img) or "")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("MKKDUMPRD_CACHE_DIR", str(tmp_path / "cache"))
    return Setup(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "append-init", "no-record"])
def test_freshness_verifies_the_whole_image(setup: Setup, damage: str) -> None:
    setup.build()
    assert setup.check().up_to_date
    whole = setup.image.read_bytes()
    if damage == "truncate":
        os.truncate(setup.image, len(whole) * 6 // 10)
    elif damage == "append-init":
        spec = ImageSpec()
        spec.add(data_entry("/init", b"#!/bin/sh\nevil\n", "appended", mode=0o755))
        extra = setup.image.with_name("extra.img")
        write_image(spec, extra, compression=Compression.NONE)
        setup.image.write_bytes(whole + extra.read_bytes())
    else:
        integrity.record_path(setup.image).unlink()
    fresh = setup.check()
    assert not fresh.up_to_date
    assert any("build wrote" in r or "digest record" in r for r in fresh.reasons), fresh
    setup.build(**{"force": True})
    assert setup.check().up_to_date


@pytest.mark.parametrize("change", ["owner", "group-write", "other-write"])
def test_loader_refuses_images_others_own_or_may_write(root: Path, change: str) -> None:  # noqa: F811
    image = root / f"boot/initramfs-{KVER}kdump.img"
    if change == "owner":
        os.chown(image, 1000, 1000)
    else:
        image.chmod(0o664 if change == "group-write" else 0o646)
    host = HostView(root)
    fake = FakeKexec(root)
    with pytest.raises(OperationError, match="refusing to load it as the capture image"):
        loader.execute_load(loader.plan_load(host, X86), host, fake.kernel)
    assert fake.calls == []


def test_loader_refuses_a_recorded_image_that_no_longer_matches(root: Path) -> None:  # noqa: F811
    image = root / f"boot/initramfs-{KVER}kdump.img"
    integrity.write_record(image, hashlib.sha256(image.read_bytes()).hexdigest())
    host = HostView(root)
    loader.execute_load(loader.plan_load(host, X86), host, FakeKexec(root).kernel)   # matches
    with image.open("ab") as f:
        f.write(b"070701" + b"0" * 104)
    fake = FakeKexec(root)
    with pytest.raises(OperationError, match="is not the file its build wrote"):
        loader.execute_load(loader.plan_load(host, X86), host, fake.kernel)
    assert fake.calls == []
