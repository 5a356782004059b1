"""sha256 of host files, hashed again only when their (size, mtime_ns, inode) changed.

The manifest names every input by content; this table (kept in the build cache) lets a
build and the up-to-date check read a file only when its stat says it may have changed.
"""

from __future__ import annotations

import hashlib
import os

from mkkdumprd.assemble import cache
from mkkdumprd.input_file import open_input

_KIND = "digests"
_NAME = "sha256"
_KEY = 1
_MAX = 50_000  # entries kept; enough for several kernels' modules


def sha256_file(path: str | os.PathLike[str]) -> str:
    # open_input: a path from a manifest that is now a FIFO or a device is an OSError, not a
    # hang or an endless read.
    h = hashlib.sha256()
    with open_input(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Digests:
    def __init__(self, known: dict[str, tuple[cache.FileId, str]] | None = None) -> None:
        self._known = dict(known or {})
        self._dirty = False

    @classmethod
    def load(cls) -> Digests:
        value = cache.load(_KIND, _NAME, _KEY)
        return cls(value if isinstance(value, dict) else None)

    def sha256(self, path: str) -> str | None:
        """The file's digest (None when it is missing or unreadable)."""
        fid = cache.file_id(path)
        if fid is None:
            return None
        known = self._known.get(path)
        if known is not None and known[0] == fid:
            return known[1]
        try:
            digest = sha256_file(path)
        except OSError:
            return None
        # Stat again: a file written while it was hashed must not be remembered as clean.
        if cache.file_id(path) == fid:
            self._known[path] = (fid, digest)
            self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty:
            return
        if len(self._known) > _MAX:
            self._known = dict(list(self._known.items())[-_MAX:])
        cache.store(_KIND, _NAME, _KEY, self._known)
        self._dirty = False
