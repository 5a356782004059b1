"""Opening a file that mkkdumprd parses: a regular file of bounded size, or a one-line error.

Every reader of user-supplied or host files that we parse (kdump.conf, images for `ls` and
`crashkernel recommend --image`, module indexes, boot configuration) opens through here, so
none of them can be made to block on a FIFO, read a character device such as /dev/zero
until memory runs out, or slurp a file far larger than its format ever is. The open uses
O_NONBLOCK so that opening a FIFO returns at once; the type is checked on the open file
(fstat), not on the name, so a rename in between changes nothing.

Standard library only: the loader may import it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from mkkdumprd.errors import UsageError

# Caps per kind of input. Text configuration is small; module indexes of a distro kernel
# are a few MB (modules.alias ~1.5 MB, modules.builtin.modinfo ~0.5 MB).
TEXT_MAX = 4 << 20
INDEX_MAX = 256 << 20

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class InputFileError(UsageError, OSError):
    """The file cannot be used as input. Also an OSError (with `strerror` set to the
    reason), so callers that report `cannot read X: <strerror>` keep working unchanged."""

    def __init__(self, path: str | os.PathLike[str], reason: str, code: int = errno.EINVAL):
        OSError.__init__(self, code, reason, str(path))
        self.reason = reason

    def __str__(self) -> str:
        return f"{printable(os.fspath(self.filename))}: {self.reason}"


def printable(text: str) -> str:
    """`text` with control characters and undecodable bytes shown as escapes."""
    out: list[str] = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:          # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o < 0xA0 or ch == "\\":
            out.append("\\\\" if ch == "\\" else f"\\x{o:02x}")
        elif o in (0x2028, 0x2029) or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069:
            out.append(f"\\u{o:04x}")      # line separators and bidi overrides
        else:
            out.append(ch)
    return "".join(out)


def open_input(path: str | os.PathLike[str], max_size: int | None = None) -> BinaryIO:
    """`path` opened for reading, if it is a regular file no larger than `max_size`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputFileError(path, _reason(exc), exc.errno or errno.EIO) from None
    try:
        st = os.fstat(fd)
        kind = stat.S_IFMT(st.st_mode)
        if kind != stat.S_IFREG:
            what = _KINDS.get(kind, "not a regular file")
            raise InputFileError(path, f"is {what}, not a regular file")
        if max_size is not None and st.st_size > max_size:
            raise InputFileError(
                path, f"is {st.st_size} bytes, more than the {max_size} this input can be",
                errno.EFBIG)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | os.PathLike[str], max_size: int = TEXT_MAX) -> bytes:
    """The whole content of `path` (see `open_input`); a file that grows past `max_size`
    while it is read is refused too."""
    parts: list[bytes] = []
    total = 0
    with open_input(path, max_size) as f:
        # In chunks: f.read(max_size + 1) would allocate the whole cap up front.
        while total <= max_size:
            chunk = f.read(min(1 << 20, max_size + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    data = b"".join(parts)
    if len(data) > max_size:
        raise InputFileError(path, f"is more than {max_size} bytes", errno.EFBIG)
    return data


def read_input_text(path: str | os.PathLike[str], max_size: int = TEXT_MAX,
                    errors: str = "strict") -> str:
    """`read_input` decoded as UTF-8."""
    data = read_input(path, max_size)
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"is not UTF-8 text (byte {exc.start})") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)

