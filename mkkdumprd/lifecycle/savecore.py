"""Recover a raw-target dump in the first kernel (Fedora kdumpctl's save_raw).

The capture kernel wrote makedumpfile's flattened stream onto the raw device: a 4096-byte
header block (signature "makedumpfile", type 1 = flattened), then records of a big-endian
(offset, size) pair and `size` bytes, then an end record (-1, -1). A stream cut short (the
device was smaller than the dump, the write failed) keeps a valid-looking header; fed such
a stream, `makedumpfile -R` waits for more input for about ten minutes. So the records are
walked to the end record first (bounded by the device's size, never reading the data), and
only a whole stream is rebuilt.

`makedumpfile -R` (a runtime tool of kdump, as in Fedora) rebuilds it into
PATH/YYYY-MM-DD-HH:MM/vmcore-incomplete, renamed to vmcore once it succeeded and is flushed;
then the first 512-byte block of the device is zeroed so the same dump is not found again.
A stream that is not whole gets its signature replaced by FAILED_SIGNATURE (the rest stays
for whoever wants to look at it), so later boots do not try it again. A failed rebuild of a
whole stream (e.g. no space under PATH) removes its directory and keeps the device as it
was, to be tried again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.errors import OperationError, UsageError

# struct makedumpfile_header: char signature[16] = "makedumpfile"; int64 type (big-endian,
# 1 = flattened); int64 version. It fills the first MAX_SIZE_MDF_HEADER bytes.
SIGNATURE = b"makedumpfile".ljust(16, b"\0")
FAILED_SIGNATURE = b"mkkdumprd-failed"
TYPE_FLAT = (1).to_bytes(8, "big")
HEADER_SIZE = 4096
RECORD = 16
END = -1
BLOCK = 512
# makedumpfile -R on a stream already known to be whole: generous, but never endless.
REBUILD_TIMEOUT = 3600.0


@dataclass(frozen=True)
class SaveResult:
    vmcore: Path | None
    message: str


def has_flat_dump(device: Path) -> bool:
    try:
        with open(device, "rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise UsageError(f"cannot read {device}: {exc.strerror}; check the raw device") from None
    return head[:16] == SIGNATURE and head[16:24] == TYPE_FLAT


def stream_problem(device: Path) -> str | None:
    """None when the flattened stream on `device` runs whole to its end record, else what
    is wrong. Reads only the 16-byte record headers: time bounded by the device's size."""
    try:
        fd = os.open(device, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"cannot read {device}: {exc.strerror}; check the raw device") from None
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        pos, records = HEADER_SIZE, 0
        while True:
            head = os.pread(fd, RECORD, pos)
            if len(head) < RECORD:
                return (f"the stream is cut short after {records} records ({pos} of "
                        f"{size} bytes): no end record; the device was too small for the "
                        "dump, or writing it failed")
            offset = int.from_bytes(head[:8], "big", signed=True)
            length = int.from_bytes(head[8:], "big", signed=True)
            if offset == END and length == END:
                return None
            if offset < 0 or length <= 0:
                return (f"record {records + 1} at byte {pos} is not a valid record "
                        f"(offset {offset}, size {length})")
            if pos + RECORD + length > size:
                return (f"the stream is cut short: record {records + 1} at byte {pos} needs "
                        f"{length} bytes past the end of the device ({size} bytes); the "
                        "device was too small for the dump, or writing it failed")
            pos += RECORD + length
            records += 1
    except OSError as exc:
        raise OperationError(f"cannot read {device}: {exc.strerror}") from None
    finally:
        os.close(fd)


def savecore(device: Path, path: Path, *, makedumpfile: str | None = None,
             now: float | None = None) -> SaveResult:
    if not has_flat_dump(device):
        return SaveResult(None, f"no dump on {device}")
    problem = stream_problem(device)
    if problem is not None:
        _write_head(device, FAILED_SIGNATURE)
        raise OperationError(
            f"the dump on {device} cannot be recovered: {problem}. Its signature is now "
            f"{FAILED_SIGNATURE.decode()!r}, so it is not tried again"
        )
    tool = makedumpfile or shutil.which("makedumpfile")
    if tool is None:
        raise OperationError(
            f"{device} holds a dump but makedumpfile is not installed; install it and run "
            f"mkkdumprd savecore again"
        )
    stamp = time.strftime("%Y-%m-%d-%H:%M", time.localtime(now))
    target = path / stamp
    n = 1
    while target.exists():
        n += 1
        target = path / f"{stamp}-{n}"
    try:
        target.mkdir(parents=True)
    except OSError as exc:
        raise OperationError(f"cannot create {target}: {exc.strerror}") from None
    incomplete = target / "vmcore-incomplete"
    vmcore = target / "vmcore"
    try:
        with open(device, "rb") as src:
            r = subprocess.run([tool, "-R", str(incomplete)], stdin=src, capture_output=True,
                               text=True, timeout=REBUILD_TIMEOUT)
        detail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        failure = None if r.returncode == 0 else f"exit {r.returncode}: {detail[0]}"
        if failure is None:
            _fsync(incomplete)
            os.rename(incomplete, vmcore)
            _fsync(target)
    except subprocess.TimeoutExpired:
        failure = f"no result within {REBUILD_TIMEOUT:.0f} s"
    except OSError as exc:
        failure = f"{exc.strerror} writing {target}"
    if failure is not None:
        shutil.rmtree(target, ignore_errors=True)
        raise OperationError(
            f"makedumpfile -R could not rebuild the dump on {device} ({failure}); the "
            f"device is left as it was"
        )
    _write_head(device, b"\0" * BLOCK)
    return SaveResult(vmcore, f"dump saved to {vmcore}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_head(device: Path, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
