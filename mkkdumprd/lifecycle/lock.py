"""One mkkdumprd service verb at a time: flock(2) on /run/lock/mkkdumprd (as kdumpctl).

A second caller (a kernel update's hook while the unit starts, two admins) waits for the
first one and then proceeds; after a second of waiting it says whom it waits for. The lock
file is never deleted: unlinking a flock file lets a third caller lock a new inode while
the second still holds the old one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mkkdumprd.errors import OperationError
from mkkdumprd.host import HostView
from mkkdumprd.lifecycle.locations import LOCK_FALLBACK, LOCK_FILE

NOTICE_AFTER = 1.0
_POLL = 0.05


def lock_path(host: HostView) -> Path:
    primary = host.path(LOCK_FILE)
    if primary.parent.is_dir() and os.access(primary.parent, os.W_OK):
        return primary
    return host.path(LOCK_FALLBACK)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OperationError(
            f"cannot open the lock file {path}: {exc.strerror}; run as root") from None


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f"pid {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def service_lock(host: HostView, notify: Callable[[str], None],
                 notice_after: float = NOTICE_AFTER) -> Iterator[Path]:
    """Hold the lock for the body; wait (telling `notify` once) while someone else has it."""
    path = lock_path(host)
    fd = _open(path)
    try:
        if not _try(fd):
            deadline = time.monotonic() + notice_after
            acquired = False
            while time.monotonic() < deadline:
                time.sleep(_POLL)
                if _try(fd):
                    acquired = True
                    break
            if not acquired:
                notify(f"waiting for {_holder(fd)} to release {path} "
                       "(another mkkdumprd start/stop/reload is running)")
                fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        # Closing drops the flock; the pid stays behind only as a hint for the next waiter.
        os.close(fd)
