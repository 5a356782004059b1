"""Recover a raw-target dump in the first kernel (Fedora kdumpctl's save_raw).

The capture kernel wrote makedumpfile's flattened stream onto the raw device. Here
`makedumpfile -R` (a runtime tool of kdump, as in Fedora) rebuilds it into
PATH/YYYY-MM-DD-HH:MM/vmcore; then the first 512-byte block of the device is zeroed so the
same dump is not found again. A failed recovery removes its directory and keeps the device
as it was.
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
# 1 = flattened); int64 version.
SIGNATURE = b"makedumpfile".ljust(16, b"\0")
TYPE_FLAT = (1).to_bytes(8, "big")
BLOCK = 512


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


def savecore(device: Path, path: Path, *, makedumpfile: str | None = None,
             now: float | None = None) -> SaveResult:
    if not has_flat_dump(device):
        return SaveResult(None, f"no dump on {device}")
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
    vmcore = target / "vmcore"
    with open(device, "rb") as src:
        r = subprocess.run([tool, "-R", str(vmcore)], stdin=src, capture_output=True,
                           text=True)
    if r.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        detail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise OperationError(
            f"makedumpfile -R could not rebuild the dump on {device} (exit {r.returncode}: "
            f"{detail[0]}); the device is left as it was"
        )
    _wipe_header(device)
    return SaveResult(vmcore, f"dump saved to {vmcore}")


def _wipe_header(device: Path) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\0" * BLOCK, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
