"""Read initramfs images the way the kernel unpacks them.

An image is a sequence of NUL padding, uncompressed newc cpio archives and compressed
streams holding more cpio (`init/initramfs.c`). dracut writes an uncompressed early
(microcode) archive and then a compressed main one; initramfs-tools may write several
uncompressed archives first. Each compressed stream's format comes from its magic, and
its end from the decompressor itself, so what follows it is read too (as lsinitrd,
unmkinitramfs and 3cpio do). The newc headers are parsed here: libarchive reads cpio but
cannot say where one segment ends and the next begins.

The bytes are untrusted (`ls` and `crashkernel recommend --image` take any file), so the
reader is bounded: every header field must be eight hex digits, names are at most
PATH_MAX, a member may not claim more than what is left of an uncompressed segment, the
decoders hand out at most _CHUNK bytes per step, and an image may unpack to at most
UNPACKED_MAX. File data is skipped unless asked for (read_file, capped).
"""

from __future__ import annotations

import bz2
import errno
import io
import itertools
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import zstandard

from mkkdumprd.errors import UsageError
from mkkdumprd.image.compression import Detected, detect
from mkkdumprd.input_file import InputFileError, open_input, printable

_HEADER = 110
_TRAILER = "TRAILER!!!"
_FEED = 64 << 10      # compressed bytes read at a time
_CHUNK = 256 << 10    # decompressed bytes produced at a time (the buffer's bound)

# What one image may unpack to (names + data, all segments). The kernel unpacks an initramfs
# into RAM, and a capture image must fit in the crashkernel= reservation with its kernel;
# distro initramfs images unpack to a few hundred MB. A header that declares more than is
# left of this is refused before anything is decompressed (a 128 KB zstd bomb of 4 GiB).
UNPACKED_MAX = 2 << 30
NAME_MAX = 4096       # PATH_MAX: the kernel's initramfs unpacker refuses longer names
FILE_MAX = 64 << 20   # what read_file hands out (a manifest is a few hundred KB)

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
    """Every member of every segment, in archive order. File data is skipped, not kept.

    Hard links (nlink >= 2, one inode) carry their data on one member only, the last in
    GNU cpio's output; every member of the group reports that size.
    """
    with _open(image) as f:
        raw = [(m, link) for m, _, link in _walk(f, image)]
    sizes: dict[_LinkKey, int] = {}
    for m, link in raw:
        if link is not None:
            sizes[link] = max(sizes.get(link, 0), m.size)
    return [replace(m, size=sizes[link]) if link is not None else m for m, link in raw]


def read_file(image: Path, path: str, max_size: int = FILE_MAX) -> bytes:
    """The content of the regular file `path` in the image (the last copy wins, as in the
    kernel's unpacking). A file larger than `max_size` is refused, not read."""
    want = normalise(path)
    found: Member | None = None
    found_link: _LinkKey | None = None
    content = b""
    with _open(image) as f:
        for member, body, link in _walk(f, image):
            if member.path == want:
                found, found_link = member, link
                content = b""
                if member.kind == "file":
                    _check_wanted(image, want, member.size, max_size)
                    content = body()
            elif link is not None and link == found_link and member.size:
                _check_wanted(image, want, member.size, max_size)
                content = body()  # the hard-link group's data comes with a later name
    if found is None:
        raise UsageError(f"{printable(want)} is not in {printable(str(image))}")
    if found.kind != "file":
        raise UsageError(f"{printable(want)} in {printable(str(image))} is a {found.kind}, "
                         "not a regular file")
    return content


def read_sorted_member(image: Path, path: str, max_size: int = FILE_MAX) -> bytes | None:
    """The first regular file `path` of an image whose members are in bytewise path order
    (mkkdumprd's writer), or None; reads only up to where `path` would be, so a manifest
    near the start costs a few kilobytes of decompression."""
    want = normalise(path)
    with _open(image) as f:
        for member, body, _ in _walk(f, image):
            if member.path == want:
                if member.kind != "file":
                    return None
                _check_wanted(image, want, member.size, max_size)
                return body()
            if member.path.encode("utf-8", "surrogateescape") > want.encode():
                return None
    return None


def _check_wanted(image: Path, want: str, size: int, max_size: int) -> None:
    if size > max_size:
        raise ImageFormatError(
            f"{printable(str(image))}: {printable(want)} is {size} bytes, more than the "
            f"{max_size} read here")


def normalise(name: str) -> str:
    """A cpio name as an absolute image path: "./bin/sh", "bin/sh", "/bin/sh" → "/bin/sh"."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def _open(image: Path) -> BinaryIO:
    try:
        return open_input(image)
    except InputFileError as exc:
        if exc.errno == errno.ENOENT:
            raise UsageError(f"{printable(str(image))} does not exist; give the path of an "
                             "initramfs image") from None
        raise UsageError(
            f"cannot read {printable(str(image))}: {exc.reason}; give the path of an "
            "initramfs image") from None


class _Stream(Protocol):
    def read(self, n: int) -> bytes: ...

    def skip(self, n: int) -> bool: ...

    def peek(self, n: int) -> bytes: ...

    def remaining(self) -> int | None: ...

    def skip_nuls(self) -> None: ...


class _FileStream:
    """The raw file, for uncompressed segments; knows how much of it is left."""

    def __init__(self, f: BinaryIO, end: int) -> None:
        self._f = f
        self._end = end

    def read(self, n: int) -> bytes:
        return self._f.read(n)

    def skip(self, n: int) -> bool:
        """Skip `n` bytes; False (and nothing skipped) when fewer are left."""
        if n > self._end - self._f.tell():
            return False
        self._f.seek(n, io.SEEK_CUR)
        return True

    def peek(self, n: int) -> bytes:
        pos = self._f.tell()
        data = self._f.read(n)
        self._f.seek(pos)
        return data

    def remaining(self) -> int | None:
        return self._end - self._f.tell()

    def skip_nuls(self) -> None:
        while True:
            stripped = _leading_nuls(self.peek(_FEED))
            if stripped == 0:
                return
            self._f.seek(stripped, io.SEEK_CUR)


class _Budget:
    """Bytes decompressed so far from one image, against UNPACKED_MAX."""

    def __init__(self, image: Path) -> None:
        self.used = 0
        self._image = image

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > UNPACKED_MAX:
            raise self.error()

    def allows(self, n: int) -> bool:
        return self.used + n <= UNPACKED_MAX

    def error(self) -> ImageFormatError:
        return ImageFormatError(
            f"{printable(str(self._image))} unpacks to more than {UNPACKED_MAX >> 30} GiB "
            "(the limit here: the kernel unpacks an initramfs into RAM, a capture image "
            "into the crashkernel= reservation); it is damaged or hostile, not read further")


class _Decoder(Protocol):
    """A decompressor that hands out at most about _CHUNK bytes per call."""

    eof: bool

    def produce(self) -> bytes: ...

    def finish(self) -> None: ...


class _Truncated(Exception):
    pass


class _BoundedStdlib:
    """zlib (gzip), bz2, lzma/xz: all take a max_length, so output per call is bounded."""

    def __init__(self, f: BinaryIO, fmt: Detected) -> None:
        self._f = f
        self._fmt = fmt
        self._d: Any
        if fmt is Detected.GZIP:
            self._d = zlib.decompressobj(wbits=31)
        elif fmt is Detected.BZIP2:
            self._d = bz2.BZ2Decompressor()
        elif fmt is Detected.LZMA:
            self._d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        else:
            self._d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        self._pending = b""
        self.eof = False

    def produce(self) -> bytes:
        while not self.eof:
            if self._fmt is Detected.GZIP:
                if not self._pending:
                    self._pending = self._feed()
                out = self._d.decompress(self._pending, _CHUNK)
                self._pending = self._d.unconsumed_tail
            else:
                data = self._feed() if self._d.needs_input else b""
                out = self._d.decompress(data, max_length=_CHUNK)
            self.eof = bool(self._d.eof)
            if out:
                return bytes(out)
        return b""

    def _feed(self) -> bytes:
        chunk = self._f.read(_FEED)
        if not chunk:
            raise _Truncated
        return chunk

    def finish(self) -> None:
        rest = len(self._d.unused_data) + len(self._pending)
        if rest:
            self._f.seek(-rest, io.SEEK_CUR)


class _BoundedZstd:
    """One zstd frame, fed to the decoder block by block: python-zstandard has no
    max_length, but a block never decodes to more than 128 KiB (RFC 8878 3.1.1.2.3),
    so neither does one call. Walking the block headers also tells where the frame ends,
    without reading past it."""

    _BLOCK_MAX = 128 << 10

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._state = "header"
        self._checksum = False
        self.eof = False

    def _read(self, n: int) -> bytes:
        data = self._f.read(n)
        if len(data) < n:
            raise _Truncated
        return data

    def produce(self) -> bytes:
        while not self.eof:
            if self._state == "header":
                head = self._read(5)
                desc = head[4]
                fcs = (0, 2, 4, 8)[desc >> 6]
                single = bool(desc & 0x20)
                if desc >> 6 == 0 and single:
                    fcs = 1
                if desc & 0x08:
                    raise zstandard.ZstdError("reserved bit set in the frame header")
                self._checksum = bool(desc & 0x04)
                rest = (0 if single else 1) + (0, 1, 2, 4)[desc & 3] + fcs
                self._d.decompress(head + self._read(rest))
                self._state = "blocks"
                continue
            bh = self._read(3)
            value = int.from_bytes(bh, "little")
            last, btype, size = value & 1, (value >> 1) & 3, value >> 3
            if btype == 3:
                raise zstandard.ZstdError("reserved block type")
            if size > self._BLOCK_MAX:
                raise zstandard.ZstdError(f"block of {size} bytes (more than 128 KiB)")
            payload = self._read(1 if btype == 1 else size)
            tail = self._read(4) if last and self._checksum else b""
            out = self._d.decompress(bh + payload + tail)
            if last:
                self.eof = True
                if not self._d.eof:
                    raise zstandard.ZstdError("the frame does not end after its last block")
            if out:
                return bytes(out)
        return b""

    def finish(self) -> None:
        pass  # the frame was read exactly to its end


class _DecodedStream:
    """One compressed stream, decoded on demand into a bounded buffer."""

    def __init__(self, f: BinaryIO, fmt: Detected, image: Path, offset: int,
                 budget: _Budget) -> None:
        self._d: _Decoder = (_BoundedZstd(f) if fmt is Detected.ZSTD
                             else _BoundedStdlib(f, fmt))
        self._buf = bytearray()
        self._fmt = fmt
        self._image = image
        self._offset = offset
        self._budget = budget

    def _where(self) -> str:
        return (f"{printable(str(self._image))}: the {self._fmt.value} stream at offset "
                f"{self._offset}")

    def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._d.eof:
            try:
                out = self._d.produce()
            except _Truncated:
                raise ImageFormatError(f"{self._where()} is truncated") from None
            except (zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError,
                    ValueError) as exc:
                raise ImageFormatError(f"{self._where()} is damaged ({exc})") from None
            self._budget.charge(len(out))
            self._buf += out

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def skip(self, n: int) -> bool:
        while n > 0:
            self._fill(min(n, _CHUNK))
            if not self._buf:
                return False
            k = min(n, len(self._buf))
            del self._buf[:k]
            n -= k
        return True

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[:n])

    def remaining(self) -> int | None:
        return None

    def skip_nuls(self) -> None:
        while True:
            self._fill(1)
            stripped = _leading_nuls(self._buf)
            if stripped == 0:
                return
            del self._buf[:stripped]

    def finish(self) -> None:
        """Leave the file just after the compressed stream (it was read to its end)."""
        self._d.finish()


Body = Callable[[], bytes]
# (archive number, dev major, dev minor, inode): the kernel's hard-link table key, reset at
# every TRAILER!!!, hence the archive number.
_LinkKey = tuple[int, int, int, int]
_Raw = tuple[Member, Body, _LinkKey | None]


def _walk(f: BinaryIO, image: Path) -> Iterator[_Raw]:
    """Members in order; call the Body before advancing to read that member's data."""
    archives = itertools.count()
    budget = _Budget(image)
    shown = printable(str(image))
    f.seek(0, io.SEEK_END)
    end = f.tell()
    f.seek(0)
    raw = _FileStream(f, end)
    segment = 0
    while True:
        _skip_nuls(raw)
        offset = f.tell()
        if offset >= end:
            if segment == 0:
                raise ImageFormatError(
                    f"{shown} is not an initramfs: it is empty or holds only NUL padding"
                )
            break
        head = raw.peek(6)
        if head.startswith(b"0707"):
            yield from _archive(raw, segment, "none", image, offset, next(archives), budget)
        else:
            fmt = detect(head)
            if fmt is None:
                if offset == 0:
                    raise ImageFormatError(
                        f"{shown} is not an initramfs: it starts with neither a cpio header "
                        "nor the magic of a compression format the kernel knows"
                    )
                raise ImageFormatError(
                    f"{shown}: junk at offset {offset} after segment {segment - 1} "
                    "(neither cpio, NUL padding nor a compressed stream)"
                )
            if fmt in (Detected.LZ4, Detected.LZO):
                yield from _libarchive_rest(f, fmt, segment, image, offset, budget)
                break
            stream = _DecodedStream(f, fmt, image, offset, budget)
            if not stream.peek(1):
                raise ImageFormatError(
                    f"{shown}: the {fmt.value} stream at offset {offset} holds no data")
            while True:
                yield from _archive(stream, segment, fmt.value, image, offset,
                                    next(archives), budget)
                _skip_nuls(stream)
                if not stream.peek(1):
                    break
            stream.finish()
        segment += 1


_ZEROS = bytes(_CHUNK)


def _leading_nuls(data: bytes | bytearray) -> int:
    """How many NULs `data` starts with (at most _CHUNK). Padding can be a whole stream
    of NULs, so this compares blocks (memcmp) instead of stripping byte by byte, which
    is a hundred times slower."""
    n = min(len(data), _CHUNK)
    if data[:n] == _ZEROS[:n]:
        return n
    lo, hi = 0, n       # data[:lo] is all NUL, data[:hi] is not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if data[:mid] == _ZEROS[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _skip_nuls(s: _Stream) -> None:
    s.skip_nuls()


_HEX = frozenset(b"0123456789abcdefABCDEF")
_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
           "devminor", "rdevmajor", "rdevminor", "namesize", "check")


def _header_fields(hdr: bytes, where: str) -> list[int]:
    """The 13 fields of a newc header: each exactly eight hex digits (no sign, no space,
    no "0x"); `int(x, 16)` alone would take "-0000001" or " +12345"."""
    out: list[int] = []
    for i, name in enumerate(_FIELDS):
        raw = hdr[6 + 8 * i: 14 + 8 * i]
        if not _HEX.issuperset(raw):
            raise ImageFormatError(
                f"{where}: cpio header field {name} is {raw!r}, not eight hex digits; "
                "the image is damaged")
        out.append(int(raw, 16))
    return out


def _archive(s: _Stream, segment: int, compression: str, image: Path,
             offset: int, number: int, budget: _Budget) -> Iterator[_Raw]:
    """Members of one newc archive, up to and including its TRAILER!!! (not yielded)."""
    shown = printable(str(image))
    where = f"{shown}: segment {segment} (offset {offset})"
    while True:
        hdr = s.read(_HEADER)
        if not hdr:
            return  # the trailer is optional at the very end
        if len(hdr) < _HEADER:
            raise ImageFormatError(f"{where}: truncated cpio header")
        magic = hdr[:6]
        if magic == b"070707":
            raise ImageFormatError(
                f"{where}: an old (odc) cpio archive; the kernel needs newc"
            )
        if magic not in (b"070701", b"070702"):
            raise ImageFormatError(
                f"{where}: bad cpio magic {magic!r}; the image is damaged"
            )
        (ino, mode, uid, gid, nlink, mtime, filesize, maj, mnr, rmaj, rmin,
         namesize, _chk) = _header_fields(hdr, where)
        if not 1 <= namesize <= NAME_MAX:
            raise ImageFormatError(
                f"{where}: cpio name size {namesize} is not between 1 and {NAME_MAX}; "
                "the image is damaged")
        left = s.remaining()
        need = namesize + (-(_HEADER + namesize) % 4) + filesize + (-filesize % 4)
        if left is not None and need > left:
            raise ImageFormatError(
                f"{where}: a cpio member needs {need} bytes but only {left} are left; "
                "the image is truncated")
        if left is None and not budget.allows(filesize):
            raise budget.error()
        name_raw = s.read(namesize)
        if len(name_raw) < namesize:
            raise ImageFormatError(f"{where}: truncated cpio name")
        if not s.skip(-(_HEADER + namesize) % 4):
            raise ImageFormatError(f"{where}: truncated cpio name")
        name = name_raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if name == _TRAILER:
            if not s.skip(filesize + (-filesize % 4)):
                raise ImageFormatError(f"{where}: truncated cpio trailer")
            return
        kind = _KINDS.get(mode & 0o170000, "unknown")
        target = None
        consumed = False
        if kind == "symlink":
            if filesize > NAME_MAX:
                raise ImageFormatError(
                    f"{where}: the symlink {printable(normalise(name))} has a target of "
                    f"{filesize} bytes (more than {NAME_MAX}); the image is damaged")
            raw_target = s.read(filesize)
            if len(raw_target) < filesize:
                raise ImageFormatError(f"{where}: truncated symlink target")
            target = raw_target.decode("utf-8", "surrogateescape")
            consumed = True
        data: list[bytes] = []

        def body(n: int = filesize, sink: list[bytes] = data) -> bytes:
            if not sink:
                chunk = s.read(n)
                if len(chunk) < n:
                    raise ImageFormatError(f"{where}: truncated file data")
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
        if not consumed and not data and not s.skip(filesize):
            raise ImageFormatError(
                f"{where}: the data of {printable(member.path)} is truncated")
        s.skip(-filesize % 4)  # padding missing only at the very end: harmless


def _text(value: str | bytes | None) -> str:
    # libarchive hands back bytes for a name it cannot decode.
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value or ""


def _libarchive_rest(f: BinaryIO, fmt: Detected, segment: int, image: Path,
                     offset: int, budget: _Budget) -> Iterator[_Raw]:
    """Formats without a stdlib decoder (lz4, lzo): libarchive reads the rest of the file
    as one stream, straight from the file (nothing is slurped); it cannot tell us where
    the stream ends, so nothing may follow it. Only a newc cpio inside is accepted, and a
    stream that decodes to no member at all is an error, not an empty listing."""
    shown = printable(str(image))
    from mkkdumprd.image import libarchive_abi  # (ctypes) only for lz4/lzo images

    libarchive, _ = libarchive_abi.require()
    f.seek(offset)
    os.lseek(f.fileno(), offset, os.SEEK_SET)  # libarchive reads the fd, not f's buffer
    count = 0
    try:
        with libarchive.fd_reader(f.fileno(), format_name="cpio") as archive:
            for entry in archive:
                count += 1
                kind = _KINDS.get(entry.filetype, "unknown")
                size = entry.size or 0
                if not budget.allows(size):
                    raise budget.error()
                budget.charge(size)
                member = Member(
                    segment=segment,
                    compression=fmt.value,
                    path=normalise(_text(entry.pathname)),
                    kind=kind,
                    mode=entry.mode & 0o7777,  # .perm is not in libarchive-c 2.9
                    uid=entry.uid,
                    gid=entry.gid,
                    size=size,
                    target=_text(entry.linkpath) if kind == "symlink" else None,
                    rdev=(entry.rdevmajor, entry.rdevminor)
                    if kind in ("chardev", "blockdev") else None,
                    mtime=int(entry.mtime or 0),
                )

                def body(e: Any = entry) -> bytes:
                    return b"".join(e.get_blocks())

                yield member, body, None
    except libarchive.ArchiveError as exc:
        msg = " ".join(str(getattr(exc, "msg", None) or exc).split())
        raise ImageFormatError(
            f"{shown}: segment {segment} is {fmt.value}-compressed and cannot be read "
            f"({msg}); it is damaged, or decompress it with the {fmt.value} tool first"
        ) from None
    if count == 0:
        raise ImageFormatError(
            f"{shown}: the {fmt.value} stream at offset {offset} holds no cpio member; "
            "the image is damaged")
