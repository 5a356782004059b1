"""Read initramfs images the way the kernel unpacks them.

An image is a sequence of NUL padding, uncompressed newc cpio archives and compressed
streams holding more cpio (`init/initramfs.c`). dracut writes an uncompressed early
(microcode) archive and then a compressed main one; initramfs-tools may write several
uncompressed archives first. Each compressed stream's format comes from its magic, and
its end from the decompressor itself, so what follows it is read too (as lsinitrd,
unmkinitramfs and 3cpio do). The newc headers are parsed here: libarchive reads cpio but
cannot say where one segment ends and the next begins.
"""

from __future__ import annotations

import bz2
import io
import itertools
import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from mkkdumprd.errors import UsageError
from mkkdumprd.image import libarchive_abi
from mkkdumprd.image.compression import Detected, detect

_HEADER = 110
_TRAILER = "TRAILER!!!"
_FEED = 256 << 10

_KINDS = {
    0o100000: "file",
    0o040000: "dir",
    0o120000: "symlink",
    0o020000: "chardev",
    0o060000: "blockdev",
    0o010000: "fifo",
    0o140000: "socket",
}


class ImageFormatError(UsageError):
    """The file is not an initramfs, or is damaged."""


@dataclass(frozen=True)
class Member:
    """One cpio member. `path` is absolute ("/init"; the root "." is "/"); `mode` holds
    the permission bits only (the type is `kind`)."""

    segment: int
    compression: str
    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    target: str | None
    rdev: tuple[int, int] | None
    mtime: int


def read_members(image: Path) -> list[Member]:
    """Every member of every segment, in archive order.

    Hard links (nlink >= 2, one inode) carry their data on one member only, the last in
    GNU cpio's output; every member of the group reports that size.
    """
    with _open(image) as f:
        raw = list(_walk(f, image))
    sizes: dict[_LinkKey, int] = {}
    for m, _, link in raw:
        if link is not None:
            sizes[link] = max(sizes.get(link, 0), m.size)
    return [replace(m, size=sizes[link]) if link is not None else m for m, _, link in raw]


def read_file(image: Path, path: str) -> bytes:
    """The content of the regular file `path` in the image (the last copy wins, as in the
    kernel's unpacking)."""
    want = normalise(path)
    found: Member | None = None
    found_link: _LinkKey | None = None
    content = b""
    with _open(image) as f:
        for member, body, link in _walk(f, image):
            if member.path == want:
                found, found_link = member, link
                content = body() if member.kind == "file" else b""
            elif link is not None and link == found_link and member.size:
                content = body()  # the hard-link group's data comes with a later name
    if found is None:
        raise UsageError(f"{want} is not in {image}")
    if found.kind != "file":
        raise UsageError(f"{want} in {image} is a {found.kind}, not a regular file")
    return content


def normalise(name: str) -> str:
    """A cpio name as an absolute image path: "./bin/sh", "bin/sh", "/bin/sh" → "/bin/sh"."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def _open(image: Path) -> BinaryIO:
    try:
        return open(image, "rb")
    except FileNotFoundError:
        raise UsageError(f"{image} does not exist; give the path of an initramfs image") from None
    except IsADirectoryError:
        raise UsageError(f"{image} is a directory, not an initramfs image") from None
    except OSError as exc:
        raise UsageError(f"cannot open {image}: {exc.strerror}") from None


class _Stream(Protocol):
    def read(self, n: int) -> bytes: ...

    def skip(self, n: int) -> None: ...

    def peek(self, n: int) -> bytes: ...


class _FileStream:
    """The raw file, for uncompressed segments."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int) -> bytes:
        return self._f.read(n)

    def skip(self, n: int) -> None:
        self._f.seek(n, io.SEEK_CUR)

    def peek(self, n: int) -> bytes:
        pos = self._f.tell()
        data = self._f.read(n)
        self._f.seek(pos)
        return data


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


_DECOMPRESSORS: dict[Detected, Callable[[], _Decompressor]] = {
    Detected.GZIP: lambda: zlib.decompressobj(wbits=31),
    Detected.BZIP2: bz2.BZ2Decompressor,
    Detected.LZMA: lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE),
    Detected.XZ: lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ),
    Detected.ZSTD: lambda: zstandard.ZstdDecompressor().decompressobj(),
}


class _DecodedStream:
    """One compressed stream, decoded on demand; knows where it ends in the file."""

    def __init__(self, f: BinaryIO, fmt: Detected, image: Path, offset: int) -> None:
        self._f = f
        self._d = _DECOMPRESSORS[fmt]()
        self._buf = bytearray()
        self._fmt = fmt
        self._image = image
        self._offset = offset

    def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._d.eof:
            chunk = self._f.read(_FEED)
            if not chunk:
                raise ImageFormatError(
                    f"{self._image}: the {self._fmt.value} stream at offset {self._offset} "
                    "is truncated"
                )
            try:
                self._buf += self._d.decompress(chunk)
            except (zlib.error, OSError, EOFError, lzma.LZMAError,
                    zstandard.ZstdError) as exc:
                raise ImageFormatError(
                    f"{self._image}: the {self._fmt.value} stream at offset {self._offset} "
                    f"is damaged ({exc})"
                ) from None

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            self._fill(min(n, _FEED))
            if not self._buf:
                return
            k = min(n, len(self._buf))
            del self._buf[:k]
            n -= k

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[:n])

    def finish(self) -> None:
        """Read to the end of the compressed stream and leave the file just after it."""
        while not self._d.eof:
            self._buf.clear()
            self._fill(1 << 30)
        rest = self._d.unused_data
        if rest:
            self._f.seek(-len(rest), io.SEEK_CUR)

Body = Callable[[], bytes]
# (archive number, dev major, dev minor, inode): the kernel's hard-link table key, reset at
# every TRAILER!!!, hence the archive number.
_LinkKey = tuple[int, int, int, int]
_Raw = tuple[Member, Body, _LinkKey | None]


def _walk(f: BinaryIO, image: Path) -> Iterator[_Raw]:
    """Members in order; call the Body before advancing to read that member's data."""
    archives = itertools.count()
    f.seek(0, io.SEEK_END)
    end = f.tell()
    f.seek(0)
    raw = _FileStream(f)
    segment = 0
    while True:
        _skip_nuls(raw)
        offset = f.tell()
        if offset >= end:
            if segment == 0:
                raise ImageFormatError(
                    f"{image} is not an initramfs: it is empty or holds only NUL padding"
                )
            break
        head = raw.peek(6)
        if head.startswith(b"0707"):
            yield from _archive(raw, segment, "none", image, offset, next(archives))
        else:
            fmt = detect(raw.peek(6))
            if fmt is None:
                if offset == 0:
                    raise ImageFormatError(
                        f"{image} is not an initramfs: it starts with neither a cpio header "
                        "nor the magic of a compression format the kernel knows"
                    )
                raise ImageFormatError(
                    f"{image}: junk at offset {offset} after segment {segment - 1} "
                    "(neither cpio, NUL padding nor a compressed stream)"
                )
            if fmt not in _DECOMPRESSORS:
                yield from _libarchive_rest(f, fmt, segment, image, offset)
                break
            stream = _DecodedStream(f, fmt, image, offset)
            while True:
                yield from _archive(stream, segment, fmt.value, image, offset,
                                    next(archives))
                _skip_nuls(stream)
                if not stream.peek(1):
                    break
            stream.finish()
        segment += 1


def _skip_nuls(s: _Stream) -> None:
    while True:
        chunk = s.peek(4096)
        if not chunk:
            return
        stripped = len(chunk) - len(chunk.lstrip(b"\0"))
        if stripped == 0:
            return
        s.skip(stripped)


def _archive(s: _Stream, segment: int, compression: str, image: Path,
             offset: int, number: int) -> Iterator[_Raw]:
    """Members of one newc archive, up to and including its TRAILER!!! (not yielded)."""
    while True:
        hdr = s.read(_HEADER)
        if not hdr:
            return  # the trailer is optional at the very end
        if len(hdr) < _HEADER:
            raise ImageFormatError(f"{image}: truncated cpio header in segment {segment}")
        magic = hdr[:6]
        if magic == b"070707":
            raise ImageFormatError(
                f"{image}: segment {segment} is an old (odc) cpio archive; the kernel needs newc"
            )
        if magic not in (b"070701", b"070702"):
            raise ImageFormatError(
                f"{image}: bad cpio magic {magic!r} in segment {segment} (offset {offset}); "
                "the image is damaged"
            )
        try:
            fields = [int(hdr[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise ImageFormatError(
                f"{image}: a cpio header in segment {segment} has non-hex fields; "
                "the image is damaged"
            ) from None
        (ino, mode, uid, gid, nlink, mtime, filesize, maj, mnr, rmaj, rmin,
         namesize, _chk) = fields
        name_raw = s.read(namesize)
        if len(name_raw) < namesize:
            raise ImageFormatError(f"{image}: truncated cpio name in segment {segment}")
        s.skip(-(_HEADER + namesize) % 4)
        name = name_raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
        if name == _TRAILER:
            s.skip(filesize + (-filesize % 4))
            return
        kind = _KINDS.get(mode & 0o170000, "unknown")
        target = None
        consumed = False
        if kind == "symlink":
            target = s.read(filesize).decode("utf-8", "surrogateescape")
            consumed = True
        data: list[bytes] = []

        def body(n: int = filesize, sink: list[bytes] = data) -> bytes:
            if not sink:
                chunk = s.read(n)
                if len(chunk) < n:
                    raise ImageFormatError(f"{image}: truncated file data in segment {segment}")
                sink.append(chunk)
            return sink[0]

        member = Member(
            segment=segment,
            compression=compression,
            path=normalise(name),
            kind=kind,
            mode=mode & 0o7777,
            uid=uid,
            gid=gid,
            size=filesize,
            target=target,
            rdev=(rmaj, rmin) if kind in ("chardev", "blockdev") else None,
            mtime=mtime,
        )
        link = (number, maj, mnr, ino) if kind == "file" and nlink >= 2 else None
        yield member, body, link
        if not consumed and not data:
            s.skip(filesize)
        s.skip(-filesize % 4)


def _constant(data: bytes) -> Body:
    return lambda: data


def _libarchive_rest(f: BinaryIO, fmt: Detected, segment: int, image: Path,
                     offset: int) -> Iterator[_Raw]:
    """Formats without a stdlib decoder (lz4, lzo): libarchive reads the rest of the file
    as one stream; it cannot tell us where the stream ends, so nothing may follow it."""
    libarchive, _ = libarchive_abi.require()
    f.seek(offset)
    blob = f.read()
    try:
        with libarchive.memory_reader(blob) as archive:
            for entry in archive:
                kind = _KINDS.get(entry.filetype, "unknown")
                data = b"".join(entry.get_blocks()) if kind == "file" else b""
                member = Member(
                    segment=segment,
                    compression=fmt.value,
                    path=normalise(entry.pathname),
                    kind=kind,
                    mode=entry.mode & 0o7777,  # .perm is not in libarchive-c 2.9
                    uid=entry.uid,
                    gid=entry.gid,
                    size=entry.size or 0,
                    target=entry.linkpath if kind == "symlink" else None,
                    rdev=(entry.rdevmajor, entry.rdevminor)
                    if kind in ("chardev", "blockdev") else None,
                    mtime=int(entry.mtime or 0),
                )
                yield member, _constant(data), None
    except libarchive.ArchiveError as exc:
        raise ImageFormatError(
            f"{image}: segment {segment} is {fmt.value}-compressed and cannot be read here "
            f"({exc}); decompress it with the {fmt.value} tool first"
        ) from None
