"""sha256 of a file: the one place that hashes file content (manifest inputs, image entries,
the build cache's digest table)."""

from __future__ import annotations

import hashlib
import os

from mkkdumprd.input_file import open_input


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file's bytes (OSError when it cannot be read).

    open_input: a path from a manifest that is now a FIFO or a device is an OSError, not a
    hang or an endless read."""
    h = hashlib.sha256()
    with open_input(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
