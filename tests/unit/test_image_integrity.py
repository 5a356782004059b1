"""Whole-image verification (issue 14 item 2): the digest of the image as written is
recorded beside it; a truncated image or one with an appended cpio segment is never "up to
date", and the loader refuses images that someone other than root owns or may write."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from mkkdumprd.image import integrity
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image


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
