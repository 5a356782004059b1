"""Stream an ImageSpec into a reproducible newc cpio initramfs.

The newc records are written here (_Newc) straight into the compressor and into a temp
file beside the destination, which is fsynced and renamed into place. Nothing is staged on
disk, and no host metadata leaks in: owners are 0:0, mtimes are SOURCE_DATE_EPOCH (or 0),
inode numbers count up in path order and nlink is fixed (2 for directories, 1 otherwise,
so the kernel never hard-links two entries). The same inputs therefore give the same
bytes.

Host files stored compressed (kernel modules, firmware) are decoded while the archive is
written, in a small thread pool that runs ahead of the writer: the kernel's rootfs needs
them plain, and zlib, lzma and zstandard release the GIL while decoding.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

import zstandard

from mkkdumprd.atomic_file import TempFileError, atomic_output
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.image.compression import DEFAULT_LEVEL, LEVEL_RANGE, Compression
from mkkdumprd.image.decode import DecodeError, decode
from mkkdumprd.image.integrity import record_path, write_record
from mkkdumprd.image.spec import Codec, Entry, ImageSpec, Kind

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

# concurrent.futures (with logging), gzip and lzma are imported when an image needs them:
# plain modules and a zstd image do not.

CHUNK = 1 << 20
# The archive goes to the compressor in blocks of this size, the last one short (as
# libarchive's custom_writer with bytes_in_last_block=1 handed them on: no padding).
_BLOCK = 256 << 10
# Compressed sources decoded ahead of the writer: bounded so memory stays small.
_DECODE_AHEAD = 32
_DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))
_MAX_NEWC = 0xFFFFFFFF
_XZ_DICT = 1 << 20
_ZSTD_JOB = 1 << 20

_S_IFMT = 0o170000

_FILETYPE = {
    Kind.FILE: 0o100000,
    Kind.DIR: 0o040000,
    Kind.SYMLINK: 0o120000,
    Kind.CHARDEV: 0o020000,
    Kind.BLOCKDEV: 0o060000,
}


@dataclass(frozen=True)
class ImageStats:
    compressed_size: int
    unpacked_size: int
    entries: int
    sha256: str = ""        # of the whole file as written (image/integrity.py records it)


def resolve_mtime(source_date_epoch: int | None = None) -> int:
    """The mtime for every entry: the argument, else $SOURCE_DATE_EPOCH, else 0."""
    if source_date_epoch is None:
        env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        if not env:
            return 0
        try:
            source_date_epoch = int(env)
        except ValueError:
            raise UsageError(
                f"SOURCE_DATE_EPOCH={env!r} is not a whole number of seconds; "
                "unset it or give a Unix timestamp"
            ) from None
    if not 0 <= source_date_epoch <= _MAX_NEWC:
        raise UsageError(
            f"SOURCE_DATE_EPOCH {source_date_epoch} does not fit the 32-bit cpio mtime field; "
            "give a timestamp between 0 and 4294967295"
        )
    return source_date_epoch


def write_image(
    spec: ImageSpec,
    out: Path,
    *,
    compression: Compression = Compression.ZSTD,
    level: int | None = None,
    threads: int = -1,
    early: ImageSpec | None = None,
    source_date_epoch: int | None = None,
) -> ImageStats:
    """Write the image atomically to `out` (mode 0600); the old file survives any failure."""
    out = Path(out)
    mtime = resolve_mtime(source_date_epoch)
    level = _check_level(compression, level)
    if out.is_dir():
        raise UsageError(f"{out} is a directory; give a file name for the image")
    try:
        with atomic_output(out, 0o600) as fh:
            stats = write_image_to(
                fh, spec, compression=compression, level=level, threads=threads,
                early=early, source_date_epoch=mtime,
            )
    except TempFileError as exc:
        raise OperationError(
            f"cannot create a temporary file in {out.parent}: {exc.strerror}; "
            "check that the directory exists and is writable"
        ) from None
    except OSError as exc:
        raise OperationError(f"cannot write {out}: {exc.strerror or exc}") from exc
    try:
        write_record(out, stats.sha256)
    except OSError as exc:
        raise OperationError(
            f"wrote {out} but cannot record its digest in {record_path(out)}: "
            f"{exc.strerror or exc}; it will be rebuilt next time") from exc
    return stats


def write_image_to(
    stream: BinaryIO,
    spec: ImageSpec,
    *,
    compression: Compression = Compression.ZSTD,
    level: int | None = None,
    threads: int = -1,
    early: ImageSpec | None = None,
    source_date_epoch: int | None = None,
) -> ImageStats:
    """Write the image into an open binary stream (not closed); see `write_image`."""
    mtime = resolve_mtime(source_date_epoch)
    level = _check_level(compression, level)
    counter = _Counter(stream)
    unpacked = 0
    count = 0
    if early is not None:
        # The early loader scans only an uncompressed first segment (x86 microcode).
        size, n = _write_cpio(early, counter.write, mtime)
        unpacked += size
        count += n
        pad = -counter.count % 4
        counter.write(b"\0" * pad)
    sink = _open_sink(compression, level, threads, counter)
    try:
        size, n = _write_cpio(spec, sink.write, mtime)
    except BaseException:
        # Close now, while the stream is open: gzip/lzma file objects would otherwise try
        # to write their trailer from __del__, into a closed file.
        with suppress(Exception):
            sink.close()
        raise
    sink.close()
    return ImageStats(counter.count, unpacked + size, count + n, counter.digest.hexdigest())


def _check_level(compression: Compression, level: int | None) -> int | None:
    if compression is Compression.NONE:
        return None
    if level is None:
        return DEFAULT_LEVEL[compression]
    lo, hi = LEVEL_RANGE[compression]
    if not lo <= level <= hi:
        raise UsageError(
            f"compression level {level} is out of range for {compression.value}; "
            f"use {lo} to {hi}"
        )
    return level


class _Sink(Protocol):
    def write(self, data: Any, /) -> Any: ...

    def close(self) -> None: ...


class _Counter:
    """Counts the bytes that reach the real stream (the compressed size)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0
        self.digest = hashlib.sha256()

    def write(self, data: Any) -> int:
        n = len(data)
        self._stream.write(data)
        self.digest.update(data)
        self.count += n
        return n

    def flush(self) -> None:
        self._stream.flush()


class _Plain:
    def __init__(self, dest: _Counter) -> None:
        self.write = dest.write

    def close(self) -> None:
        pass


def _open_sink(compression: Compression, level: int | None, threads: int,
               dest: _Counter) -> _Sink:
    if compression is Compression.ZSTD:
        assert level is not None
        # With threads >= 1 zstd's output does not depend on the thread count, so the
        # image is the same on a 2-core builder and a 64-core one. Jobs of _ZSTD_JOB: the
        # workers compress while the archive is still being written (at level 3 zstd's own
        # job size is 8 MiB, most of an image, so it compressed after the archive was
        # written); it costs ~0.4 % of the size.
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, write_checksum=True,
            **({"job_size": _ZSTD_JOB} if threads else {}))
        cctx = zstandard.ZstdCompressor(compression_params=params)
        writer: _Sink = cctx.stream_writer(
            cast(BinaryIO, dest), closefd=False, write_return_read=True
        )
        return writer
    if compression is Compression.GZIP:
        import gzip

        # No name and mtime 0 in the gzip header: reproducible.
        return gzip.GzipFile(filename="", mode="wb", fileobj=dest,
                             compresslevel=level if level is not None else 6, mtime=0)
    if compression is Compression.XZ:
        import lzma

        # The kernel's xz decoder knows CRC32 but not the default CRC64 check. It allocates
        # the whole dictionary in the capture kernel's scarce memory, so cap it at 1 MiB
        # as dracut does (`--lzma2=dict=1MiB`) instead of preset 6's 8 MiB.
        filters = [{"id": lzma.FILTER_LZMA2, "preset": level, "dict_size": _XZ_DICT}]
        return lzma.LZMAFile(cast(BinaryIO, dest), "wb", format=lzma.FORMAT_XZ,
                             check=lzma.CHECK_CRC32, filters=filters)
    return _Plain(dest)


class _Newc:
    """newc records (the kernel's initramfs format, `Documentation/driver-api/early-userspace/
    buffer-format.rst`): a 110-byte header of 13 8-digit hex fields, the name and its NUL
    padded to 4 bytes, the data padded to 4 bytes; TRAILER!!! last. Written as libarchive's
    newc writer wrote them before (the bytes of the pinned images are unchanged), in
    `_BLOCK`-sized pieces as it handed them on, the last one short; importing libarchive
    through ctypes was ~15 ms of a cold build."""

    def __init__(self, write: Callable[[Any], Any]) -> None:
        self._write = write
        self._buf = bytearray()

    def _put(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if len(buf) >= _BLOCK:
            full = len(buf) - len(buf) % _BLOCK
            for start in range(0, full, _BLOCK):
                self._write(bytes(buf[start:start + _BLOCK]))
            del buf[:full]

    def add(self, e: Entry, ino: int, mtime: int, size: int,
            chunks: Iterator[bytes] | None) -> None:
        """One entry; `size` bytes of `chunks` for a file (the caller checks the count)."""
        name = os.fsencode(str(e.path).lstrip("/"))
        body = b""
        rdev = (0, 0)
        if e.kind is Kind.SYMLINK:
            assert e.target is not None
            body = os.fsencode(e.target)
            size = len(body)
        elif e.kind in (Kind.CHARDEV, Kind.BLOCKDEV):
            assert e.rdev is not None
            rdev = e.rdev
        self._header(name, ino, _FILETYPE[e.kind] | (e.mode & ~_S_IFMT),
                     2 if e.kind is Kind.DIR else 1, mtime, size, rdev)
        if body:
            self._put(body)
        elif chunks is not None:
            for chunk in chunks:
                self._put(chunk)
        self._put(b"\0" * (-size % 4))

    def _header(self, name: bytes, ino: int, mode: int, nlink: int, mtime: int, size: int,
                rdev: tuple[int, int]) -> None:
        # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor
        # namesize check
        head = b"070701" + b"%08x" * 13 % (ino, mode, 0, 0, nlink, mtime, size, 0, 0,
                                            rdev[0], rdev[1], len(name) + 1, 0)
        self._put(head + name + b"\0" * (1 + (-(len(head) + len(name) + 1) % 4)))

    def close(self) -> None:
        """The trailer, then what is left of the last block."""
        self._header(b"TRAILER!!!", 0, 0, 1, 0, 0, (0, 0))
        if self._buf:
            self._write(bytes(self._buf))
            self._buf.clear()


def _write_cpio(spec: ImageSpec, write: Callable[[Any], Any], mtime: int) -> tuple[int, int]:
    """One newc archive ending in TRAILER!!!; returns (file bytes, entries)."""
    entries = spec.complete()
    unpacked = 0
    pool = None
    if any(e.source is not None and e.codec is not Codec.NONE for e in entries):
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="mkkdumprd-decode")
    archive = _Newc(write)
    try:
        for ino, (e, decoded) in enumerate(_prefetch(entries, pool), start=1):
            if e.kind is not Kind.FILE:
                archive.add(e, ino, mtime, 0, None)
            elif decoded is not None or e.data is not None:
                body = decoded if decoded is not None else e.data
                assert body is not None
                _check_size(e, len(body))
                archive.add(e, ino, mtime, len(body), _slices(body))
                unpacked += len(body)
            else:
                assert e.source is not None
                unpacked += _add_plain_file(archive, e, ino, mtime)
        archive.close()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return unpacked, len(entries)


def _add_plain_file(archive: _Newc, e: Entry, ino: int, mtime: int) -> int:
    assert e.source is not None
    try:
        f = open(e.source, "rb")  # noqa: SIM115 (closed below, after streaming)
    except OSError as exc:
        raise _source_error(e, exc) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        _check_size(e, size)
        seen = 0

        def chunks() -> Iterator[bytes]:
            nonlocal seen
            while seen < size:
                try:
                    chunk = f.read(min(CHUNK, size - seen))
                except OSError as exc:
                    raise _source_error(e, exc) from None
                if not chunk:
                    break
                seen += len(chunk)
                yield chunk

        archive.add(e, ino, mtime, size, chunks())
        if seen != size:
            raise OperationError(
                f"{e.source} shrank from {size} to {seen} bytes while it was written into the "
                f"image as {e.path}; rebuild when nothing is changing it"
            )
    return size


def _slices(body: bytes) -> Iterator[bytes]:
    if len(body) <= CHUNK:
        yield body
        return
    for start in range(0, len(body), CHUNK):
        yield body[start:start + CHUNK]


def _check_size(e: Entry, size: int) -> None:
    if size > _MAX_NEWC:
        raise UsageError(f"{e.path} is {size} bytes; a newc cpio member must stay below 4 GiB")


def _source_error(e: Entry, exc: OSError) -> OperationError:
    return OperationError(
        f"cannot read {e.source} for {e.path} in the image ({e.reason}): "
        f"{exc.strerror or exc}"
    )


def _prefetch(entries: list[Entry], pool: ThreadPoolExecutor | None
              ) -> Iterator[tuple[Entry, bytes | None]]:
    """Entries in order, each with its decoded body when its source is compressed."""
    pending: deque[tuple[Entry, Future[bytes] | None]] = deque()

    def submit(e: Entry) -> Future[bytes] | None:
        if pool is None or e.source is None or e.codec is Codec.NONE:
            return None
        return pool.submit(_decode, e)

    it = iter(entries)
    for e in it:
        pending.append((e, submit(e)))
        if len(pending) >= _DECODE_AHEAD:
            break
    while pending:
        e, fut = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, submit(nxt)))
        yield e, (fut.result() if fut is not None else None)


def _decode(e: Entry) -> bytes:
    """The plain bytes of a host file stored gzip/xz/zstd-compressed."""
    assert e.source is not None
    try:
        with open(e.source, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise _source_error(e, exc) from None
    try:
        return decode(raw, e.codec)
    except DecodeError as exc:
        raise OperationError(
            f"cannot decode {e.source} as {e.codec.value} for {e.path} in the image: {exc}; "
            "the file is damaged or not in that format"
        ) from None
