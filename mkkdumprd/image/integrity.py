"""Whole-image verification: the image must be, byte for byte, the file the build wrote.

The manifest inside an image cannot vouch for the file around it: an image truncated to
60 % still has its manifest near the start, and a cpio segment appended to it (which the
kernel unpacks last, so it overrides /init) leaves the manifest untouched. So the writer
hashes every byte it writes and records the digest *outside* the image, in a sidecar file
beside it, `<image>.sha256`, in sha256sum's format (`sha256sum -c` checks it by hand). The
sidecar is written after the image is renamed into place; a build killed in between leaves
an image without a matching record, which is then simply rebuilt.

`verify` reads the whole image (streamed, hashlib) and compares. Freshness calls it
(assemble/freshness.py): an image that does not match is never "up to date", so `start`
rebuilds it instead of loading it.

Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from mkkdumprd.input_file import InputFileError, printable, read_input
from mkkdumprd.sha256 import sha256_file

SUFFIX = ".sha256"
_RECORD = re.compile(r"([0-9a-f]{64})  (.+)\n")


def record_path(image: Path) -> Path:
    image = Path(image)
    return image.with_name(image.name + SUFFIX)


def record_line(image: Path, sha256: str) -> str:
    return f"{sha256}  {Path(image).name}\n"


def write_record(image: Path, sha256: str) -> None:
    """Record `sha256` as the digest of `image` as written (atomically, mode 0600)."""
    from mkkdumprd.atomic_file import atomic_write  # (tempfile): freshness only reads

    atomic_write(record_path(image), record_line(image, sha256), 0o600)


def recorded_sha256(image: Path) -> str | None:
    """The digest recorded at build time, or None when there is no valid record."""
    try:
        text = read_input(record_path(image), 4096).decode("utf-8", "replace")
    except (InputFileError, OSError):
        return None
    m = _RECORD.fullmatch(text)
    if m is None or m.group(2) != Path(image).name:
        return None
    return m.group(1)


def fd_sha256(fd: int) -> str:
    """sha256 of the whole open file `fd` (pread: its offset is left alone)."""
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


def verify_loadable(fd: int, image: Path) -> str | None:
    """For the loader, on the fd it will hand to the kernel: the reason a recorded image
    is not the file its build wrote, else None. An image without a record (one made by
    another tool, passed with --initrd) is not refused here; freshness rebuilds ours."""
    want = recorded_sha256(image)
    if want is None or fd_sha256(fd) == want:
        return None
    return (f"{printable(str(image))} is not the file its build wrote (sha256 differs from "
            f"{printable(str(record_path(image)))}): damaged or modified since; rebuild it")


def verify(image: Path) -> str | None:
    """None when `image` is exactly the file its build wrote, else the reason it is not."""
    shown = printable(str(image))
    want = recorded_sha256(image)
    if want is None:
        return (f"{shown} has no valid digest record ({printable(str(record_path(image)))}) "
                "from its build, so it cannot be verified")
    try:
        got = sha256_file(image)
    except (InputFileError, OSError) as exc:
        return f"{shown} cannot be read to verify it ({exc.strerror or exc})"
    if got != want:
        return (f"{shown} is not the file its build wrote (sha256 differs from "
                f"{printable(str(record_path(image)))}): damaged or modified since")
    return None
