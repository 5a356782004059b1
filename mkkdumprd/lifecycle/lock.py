"""One mkkdumprd service verb at a time: flock(2) on /run/mkkdumprd/lock.

A second caller (a kernel update's hook while the unit starts, two admins) waits for the
first one and then proceeds; after a second of waiting it says whom it waits for, and after
`WAIT_LIMIT` it gives up with one sentence naming the holder's pid and command.

The lock lives in a directory only its owner can write (created 0700, its owner and mode
checked before use), never in a world-writable one: there another user could plant a
symlink that makes root truncate the file it points to, or hold a flock that blocks every
start/stop forever. The file is opened with O_NOFOLLOW and checked to be a regular file of
ours before anything is written to it. It is never deleted: unlinking a flock file lets a
third caller lock a new inode while the second still holds the old one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.lifecycle.locations import LOCK_FILE

NOTICE_AFTER = 1.0
WAIT_LIMIT = 300.0
_POLL = 0.05


def lock_path(host: Host) -> Path:
    return host.path(LOCK_FILE)


def private_dir(path: Path) -> Path:
    """`path` as a directory only this user can write: created 0700, else verified."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OperationError(
            f"cannot create {path}: {exc.strerror}; mkkdumprd start/stop/reload/restart/"
            "rebuild need root") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OperationError(f"{path} is not a directory (a symlink or file was put there); "
                             "remove it and retry")
    if st.st_uid != os.geteuid() and os.geteuid() != 0:
        raise OperationError(f"{path} belongs to uid {st.st_uid}: mkkdumprd start/stop/"
                             "reload/restart/rebuild need root")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise OperationError(
            f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}; "
            f"it must belong to uid {os.geteuid()} and be writable by nobody else "
            f"(chown {os.geteuid()} {path}; chmod 0700 {path})")
    return path


def _open(path: Path) -> int:
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OperationError(f"cannot open the lock file {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise OperationError(f"the lock file {path} is not a regular file owned by uid "
                             f"{os.geteuid()}; remove it and retry")
    return fd


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
    if not text.isdigit():
        return "another process"
    # The flock and the pid belong to this machine's kernel, whatever --root says.
    try:
        raw = Path(f"/proc/{text}/cmdline").read_bytes()
    except OSError:
        return f"pid {text}"
    command = " ".join(w.decode("utf-8", "replace") for w in raw.split(b"\0") if w)
    command = "".join(c if c.isprintable() else "?" for c in command)[:200]
    return f"pid {text} ({command})" if command else f"pid {text}"


@contextlib.contextmanager
def service_lock(host: Host, notify: Callable[[str], None],
                 notice_after: float = NOTICE_AFTER,
                 wait_limit: float = WAIT_LIMIT) -> Iterator[Path]:
    """Hold the lock for the body; wait (telling `notify` once) while someone else has it."""
    path = lock_path(host)
    fd = _open(path)
    try:
        if not _try(fd):
            start = time.monotonic()
            told = False
            while not _try(fd):
                waited = time.monotonic() - start
                if waited >= wait_limit:
                    raise OperationError(
                        f"{_holder(fd)} has held {path} for more than {wait_limit:.0f} s "
                        "(another mkkdumprd start/stop/reload is running); retry when it "
                        "has finished")
                if not told and waited >= notice_after:
                    notify(f"waiting for {_holder(fd)} to release {path} "
                           "(another mkkdumprd start/stop/reload is running)")
                    told = True
                time.sleep(_POLL)
        # Ours: a regular file of this uid in a directory nobody else can write.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        # Closing drops the flock; the pid stays behind only as a hint for the next waiter.
        os.close(fd)
