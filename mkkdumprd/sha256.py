"""sha256 of a file: the one place that hashes file content (manifest inputs, image entries,
the build cache's digest table)."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file's bytes (OSError when it cannot be read)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
