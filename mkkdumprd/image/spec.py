"""ImageSpec: every entry of an initramfs, with where its bytes come from and why it is there.

Nothing is staged on disk: an entry names a host file (optionally compressed, decoded while
the archive is written) or carries its bytes. Parent directories are implied. Adding a
second entry for a path is fine when it is the same content; different content is an
error that names both reasons, never "first wins".
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mkkdumprd.errors import UsageError
from mkkdumprd.sha256 import sha256_file


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHARDEV = "chardev"
    BLOCKDEV = "blockdev"


class Codec(enum.Enum):
    """How a FILE's source is stored on the host; the writer decodes it into the image."""

    NONE = "none"
    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"


@dataclass(frozen=True)
class Entry:
    """One path of the image: a file, dir, symlink or node, its bytes, why it is there."""

    path: PurePosixPath
    kind: Kind
    mode: int
    reason: str
    source: Path | None = None
    data: bytes | None = None
    codec: Codec = Codec.NONE
    target: str | None = None
    rdev: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not self.path.is_absolute() or ".." in self.path.parts:
            raise ValueError(f"image path must be absolute and without '..': {self.path}")
        if self.kind is Kind.FILE and (self.source is None) == (self.data is None):
            raise ValueError(f"{self.path}: a file needs exactly one of source or data")
        if self.kind is Kind.SYMLINK and not self.target:
            raise ValueError(f"{self.path}: a symlink needs a target")
        if self.kind in (Kind.CHARDEV, Kind.BLOCKDEV) and self.rdev is None:
            raise ValueError(f"{self.path}: a device node needs rdev")
        if self.mode & ~0o7777:
            raise ValueError(f"{self.path}: mode {self.mode:o} has bits beyond permissions")

    def content_key(self) -> tuple[object, ...]:
        """What makes two entries for the same path the same entry."""
        if self.kind is Kind.FILE:
            return (self.kind, self.mode, self.file_digest())
        return (self.kind, self.mode, self.target, self.rdev)

    def file_digest(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.source is not None
        return f"{self.codec.value}:{sha256_file(self.source)}"


def file_entry(path: str, source: Path, reason: str, mode: int | None = None,
               codec: Codec = Codec.NONE) -> Entry:
    """A regular file copied from the host; mode defaults to the source's permission bits."""
    if mode is None:
        mode = source.stat().st_mode & 0o7777
    return Entry(PurePosixPath(path), Kind.FILE, mode, reason, source=source, codec=codec)


def data_entry(path: str, data: bytes | str, reason: str, mode: int = 0o644) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    return Entry(PurePosixPath(path), Kind.FILE, mode, reason, data=raw)


def dir_entry(path: str, reason: str, mode: int = 0o755) -> Entry:
    return Entry(PurePosixPath(path), Kind.DIR, mode, reason)


def symlink_entry(path: str, target: str, reason: str) -> Entry:
    return Entry(PurePosixPath(path), Kind.SYMLINK, 0o777, reason, target=target)


def device_entry(path: str, kind: Kind, major: int, minor: int, reason: str,
                 mode: int = 0o600) -> Entry:
    return Entry(PurePosixPath(path), kind, mode, reason, rdev=(major, minor))


class EntryConflict(UsageError):
    """Two producers want different content at one path."""


@dataclass
class ImageSpec:
    """Entries keyed by image path. Mutable while a build assembles it; then written."""

    _entries: dict[PurePosixPath, Entry] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        old = self._entries.get(entry.path)
        if old is None:
            self._entries[entry.path] = entry
            return
        if old is entry or _same_file(old, entry) or old.content_key() == entry.content_key():
            return
        raise EntryConflict(
            f"two different entries for {entry.path} in the image: "
            f"{_describe(old)} ({old.reason}) and {_describe(entry)} ({entry.reason})"
        )

    def extend(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.add(e)

    def get(self, path: str | PurePosixPath) -> Entry | None:
        return self._entries.get(PurePosixPath(path))

    def __contains__(self, path: object) -> bool:
        return PurePosixPath(str(path)) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def complete(self) -> list[Entry]:
        """All entries plus implied parent directories, sorted bytewise by path."""
        out = dict(self._entries)
        root = PurePosixPath("/")
        seen: set[PurePosixPath] = set()  # parents checked, with their own parents
        for path in list(self._entries):
            for parent in path.parents:
                if parent == root or parent in seen:
                    break
                seen.add(parent)
                existing = out.get(parent)
                if existing is None:
                    out[parent] = Entry(parent, Kind.DIR, 0o755, "parent directory")
                elif existing.kind is not Kind.DIR:
                    raise EntryConflict(
                        f"{parent} is a {existing.kind.value} ({existing.reason}) but "
                        f"{path} needs it to be a directory"
                    )
        # fsencode: host names that are not UTF-8 (surrogate-escaped) sort by their bytes too.
        return [out[k] for k in sorted(out, key=lambda p: os.fsencode(str(p)))]


def _same_file(a: Entry, b: Entry) -> bool:
    """The same host file the same way: equal content keys without reading the file (two
    binaries' closures add the same libraries)."""
    return (a.kind is Kind.FILE and b.kind is Kind.FILE and a.source is not None
            and a.source == b.source and a.codec is b.codec and a.mode == b.mode)


def _describe(e: Entry) -> str:
    if e.kind is Kind.FILE:
        return f"file from {e.source}" if e.source else f"file of {len(e.data or b'')} bytes"
    if e.kind is Kind.SYMLINK:
        return f"symlink to {e.target}"
    return str(e.kind.value)
