"""Replacing a file so that readers see the old one or the new one, never a torn one.

The new content goes to a temporary file in the same directory, is fsynced, renamed over
the old path and the directory synced; on any failure the temporary file is removed and the
old file is untouched. Standard library only: the loader imports it too.

An interrupted write leaves nothing either: while a temporary file exists, SIGTERM and
SIGHUP (when nobody else handles them) raise SystemExit(128 + signal), so the cleanup runs
as for any error, and SIGINT is KeyboardInterrupt already. SIGKILL cannot be caught: the
temporary file's name carries the writer's pid (`.NAME.mkkdumprd-PID.XXXXXXXX.tmp`), and the
next write of the same file removes those whose writer is gone.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import BinaryIO

_TAG = "mkkdumprd"
_CAUGHT = (signal.SIGTERM, signal.SIGHUP)


class TempFileError(OSError):
    """The temporary file could not be created (the directory is missing or read-only)."""


def _temp_prefix(name: str, pid: int) -> str:
    return f".{name}.{_TAG}-{pid}."


def _remove_own_temps(directory: Path, prefix: str) -> None:
    with suppress(OSError):
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(".tmp"):
                with suppress(OSError):
                    os.unlink(directory / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # another user's live process
        return True
    return True


def sweep_stale(path: Path) -> list[Path]:
    """Remove the temporary files of `path` left by writers that are gone (SIGKILL, a
    power cut mid-build); returns what was removed. Live writers' files are kept."""
    pattern = re.compile(re.escape(f".{path.name}.{_TAG}-") + r"(\d+)\.[^/]*\.tmp")
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or _alive(int(m.group(1))):
            continue
        with suppress(FileNotFoundError):
            (path.parent / name).unlink()
            removed.append(path.parent / name)
    return removed


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def _exit_on_termination() -> Iterator[None]:
    """SIGTERM/SIGHUP become SystemExit for the block (main thread, default handlers only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig in _CAUGHT:
        if signal.getsignal(sig) is signal.SIG_DFL:
            saved[sig] = signal.signal(sig, _raise_exit)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextmanager
def atomic_output(path: Path, mode: int = 0o644, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` when the block ends without error.

    `durable=False` skips the fsyncs: readers still see the old or the new file, never half
    of one, but after a power loss the file may be the old one or empty. For what may be
    lost (the build cache, whose reader treats a damaged file as absent), where the fsyncs
    were a tenth of a cold build."""
    path = Path(path)
    sweep_stale(path)
    with _exit_on_termination():
        prefix = _temp_prefix(path.name, os.getpid())
        try:
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise TempFileError(exc.errno, exc.strerror, str(path.parent)) from exc
        except BaseException:
            # A signal between mkstemp's open and its return (SystemExit from the handler
            # above) leaves a file whose name we never got: this process's prefix finds it.
            _remove_own_temps(path.parent, prefix)
            raise
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                yield f
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644, *,
                 durable: bool = True) -> None:
    """Replace `path` with `data` (str is written as UTF-8); `durable` as atomic_output."""
    with atomic_output(path, mode, durable=durable) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory is synced; some filesystems refuse.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
