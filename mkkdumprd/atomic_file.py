"""Replacing a file so that readers see the old one or the new one, never a torn one.

The new content goes to a temporary file in the same directory, is fsynced, renamed over
the old path and the directory synced; on any failure the temporary file is removed and the
old file is untouched. Standard library only: the loader imports it too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO


class TempFileError(OSError):
    """The temporary file could not be created (the directory is missing or read-only)."""


@contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` when the block ends without error."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise TempFileError(exc.errno, exc.strerror, str(path.parent)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data` (str is written as UTF-8)."""
    with atomic_output(path, mode) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory is synced; some filesystems refuse.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
