"""The build cache: what a build derives from host files, kept between runs.

A rebuild for an unchanged kernel and unchanged binaries should not parse modules.alias,
scan `.modinfo` sections, parse ELF headers or hash files again. Each cached value is
stored with the identity of the files it came from (path, size, mtime_ns, inode) and is
used only while that identity is unchanged.

Where: $MKKDUMPRD_CACHE_DIR if set (empty or "off": no cache), else /var/cache/mkkdumprd
for root and $XDG_CACHE_HOME/mkkdumprd (~/.cache/mkkdumprd) for other users. The values
are pickles, so a directory that someone else could write to is never read: it must be
owned by the caller and not writable by group or others. Writes go to a temp file renamed
into place, not fsynced (a reader sees the old or the new file, never half of one; after a
power cut a file may be empty, which loads as absent); each file starts
with a header naming the format, mkkdumprd's and Python's versions, and anything that does
not load cleanly is treated as absent. The cache is an optimisation only: every failure
to read or write it is silent.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from contextlib import suppress
from pathlib import Path

from mkkdumprd import __version__
from mkkdumprd.cache_location import ENV as ENV  # re-exported: callers name cache.ENV
from mkkdumprd.cache_location import cache_dir_name, is_private_dir

FORMAT = 1
_HEADER = (f"mkkdumprd-cache {FORMAT} {__version__} "
           f"py{sys.version_info[0]}.{sys.version_info[1]}\n").encode()

FileId = tuple[int, int, int]  # (size, mtime_ns, inode)


def cache_dir() -> Path | None:
    """The cache directory for this user, or None when caching is off."""
    name = cache_dir_name()
    return None if name is None else Path(name)


def file_id(path: str | os.PathLike[str]) -> FileId | None:
    """What tells a file's content changed without reading it; None if it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _safe_dir(d: Path) -> bool:
    return is_private_dir(d)


def _file(kind: str, name: str) -> Path | None:
    d = cache_dir()
    if d is None:
        return None
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return d / f"{kind}-{digest}.pickle"


def load(kind: str, name: str, key: object) -> object | None:
    """The value stored for (kind, name) if it was stored with an equal `key`."""
    path = _file(kind, name)
    if path is None or not _safe_dir(path.parent):
        return None
    try:
        with open(path, "rb") as f:
            if f.readline() != _HEADER:
                return None
            stored_key, value = pickle.load(f)  # only from our own private directory
    except Exception:  # a damaged cache is an absent cache
        return None
    return value if stored_key == key else None


def store(kind: str, name: str, key: object, value: object) -> None:
    """Keep `value` for (kind, name) under `key`, atomically; failures are ignored."""
    path = _file(kind, name)
    if path is None:
        return
    with suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _safe_dir(path.parent):
        return
    try:
        data = pickle.dumps((key, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an unpicklable value is simply not cached
        return
    from mkkdumprd.atomic_file import atomic_write  # (tempfile): only when storing

    # A cache that cannot be written is only a slower next build; one lost to a power cut
    # loads as absent (the header and pickle checks above), so it is not fsynced.
    with suppress(OSError):
        atomic_write(path, _HEADER + data, 0o600, durable=False)
