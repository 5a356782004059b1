"""atomic_output/atomic_write: the old file or the new one, never a torn one or a temp left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mkkdumprd.atomic_file import TempFileError, atomic_output, atomic_write


def test_replaces_with_mode(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    atomic_write(p, "new", 0o600)
    assert p.read_text() == "new"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(p) as f:
        f.write(b"half")
        raise RuntimeError("source vanished")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]


def test_missing_directory_is_a_temp_file_error(tmp_path: Path) -> None:
    with pytest.raises(TempFileError) as info:
        atomic_write(tmp_path / "nope" / "f", b"x")
    assert info.value.filename == str(tmp_path / "nope")
