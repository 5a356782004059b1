"""Recording what a block of code observes of the machine, whichever way it asks.

The up-to-date check reads the machine through several doors (the Host, the digest table,
the image reader, pathlib's is_file on candidates, os.scandir over modules.d); a stamp
that listed them by hand would fall behind the first time someone adds a door. So the
recorder sits below all of them, for the length of a `with recording(rec):` block:

- every open for reading, directory listing (os.listdir, os.scandir: os.walk, pathlib,
  glob) through Python's audit hook, which every one of them raises, C code included;
- os.stat, os.lstat, os.readlink and os.access, which raise no audit event, by replacing
  them in the os module for the block (pathlib, os.path and shutil call them there), and
  os.open for its dir_fd (which the audit event does not carry);
- anything whose answer a stamp cannot replay taints the recording: sockets (a DNS
  lookup, the NFS check), commands, ctypes calls, a FIFO or device opened, a write
  outside the ignored directories, a path relative to a directory fd, os.chdir.

Not seen: DirEntry.stat() (a listing records names and types; the check does not stat
entries that way). The import system's own opens and listings are not observations (the
code is keyed by mkkdumprd's version and location). The stamp (stamp.py) is written only
from an untainted recording whose every observation still holds when the check is over.

Standard library only.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mkkdumprd.uptodate.observations import (
    Unrecordable,
    fingerprint,
    is_pseudo,
    pseudo_devices,
)

_TAINTS = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "os.fork", "os.forkpty", "ctypes.", "os.chdir", "os.fchdir", "os.getxattr",
           "os.listxattr", "mmap.")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_IMPORTS = "<frozen importlib"


class Recorder:
    """The observations of one run: (kind, path) → fingerprint, and why it cannot be
    stamped (`taint`) if something could not be recorded. Paths equal to or below an
    `ignore` directory (the build cache: an optimisation that never changes an answer)
    are not observations."""

    def __init__(self, ignore: tuple[str, ...] = ()) -> None:
        self.seen: dict[tuple[str, bytes], str] = {}
        self.taint: str | None = None
        self._ignore = tuple(os.fsencode(os.path.abspath(d)) for d in ignore)
        self._pseudo_devs = pseudo_devices()
        # Per thread: the recorder's own looks are not observations, while another
        # thread's looks at the same moment are (a check may read in a helper thread).
        self._local = threading.local()

    def _ignored(self, path: bytes) -> bool:
        p = os.path.abspath(path)
        return any(p == d or p.startswith(d + b"/") for d in self._ignore)

    def note(self, kind: str, path: bytes) -> None:
        if self.taint is not None or self._ignored(path):
            return
        key = (kind, path)
        try:
            now = fingerprint(kind, path)
        except Unrecordable as exc:
            self.taint = str(exc)
            return
        old = self.seen.setdefault(key, now)  # one dict operation: atomic under the GIL
        if old != now:
            self.taint = f"{os.fsdecode(path)} changed while it was checked"

    def _pseudo(self, path: bytes, st: os.stat_result | None) -> bool:
        return is_pseudo(path) or (st is not None and st.st_dev in self._pseudo_devs)

    # ---- what the patched functions and the audit hook report -------------------------

    def stat(self, path: Any, dir_fd: int | None, follow: bool) -> None:
        if isinstance(path, int):
            return  # fstat of a file whose open was recorded
        if dir_fd is not None:
            self.taint = "a path relative to a directory fd"
            return
        p = os.fsencode(path)
        pseudo = self._pseudo(p, _stat_quiet(p) if follow else _lstat_quiet(p))
        self.note(("p" if pseudo else "") + ("stat" if follow else "lstat"), p)

    def opened(self, path: Any, mode: Any, flags: Any) -> None:
        if isinstance(path, int):
            return
        p = os.fsencode(path)
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags >= 0 and flags & _WRITE_FLAGS)
        if writing:
            if not self._ignored(p):
                self.taint = f"{os.fsdecode(p)} was opened for writing"
            return
        st = _stat_quiet(p)
        if st is None:
            self.note("open", p)
        elif self._pseudo(p, st):
            self.note("content", p)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            self.note("stat", p)
        elif not self._ignored(p):
            self.taint = f"{os.fsdecode(p)} is not a regular file"

    def readlink(self, path: Any, dir_fd: int | None) -> None:
        if dir_fd is not None or isinstance(path, int):
            self.taint = "readlink relative to a directory fd"
        else:
            self.note("readlink", os.fsencode(path))

    def access(self, path: Any, mode: int, options: dict[str, Any]) -> None:
        if options or isinstance(path, int) or not 0 <= mode <= 7:
            self.taint = "os.access with options"
        else:
            self.note(f"access{mode}", os.fsencode(path))

    def listed(self, path: Any) -> None:
        if isinstance(path, int):
            self.taint = "a directory listed by its fd"
            return
        self.note("list", b"." if path is None else os.fsencode(path))

    def event(self, name: str, args: tuple[Any, ...]) -> None:
        if name == "open":
            self.opened(*args[:3])
        elif name in ("os.listdir", "os.scandir"):
            self.listed(args[0])
        elif name.startswith(_TAINTS):
            self.taint = f"the check used {name}"


def _stat_quiet(p: bytes) -> os.stat_result | None:
    try:
        return _REAL["stat"](p)  # type: ignore[no-any-return]
    except OSError:
        return None


def _lstat_quiet(p: bytes) -> os.stat_result | None:
    try:
        return _REAL["lstat"](p)  # type: ignore[no-any-return]
    except OSError:
        return None


# ---- the machinery: one audit hook per process, os functions replaced per block ---------

_REAL: dict[str, Callable[..., Any]] = {
    "stat": os.stat, "lstat": os.lstat, "readlink": os.readlink, "access": os.access,
    "open": os.open}
_active: Recorder | None = None
_hooked = False


def _current() -> Recorder | None:
    rec = _active
    if rec is None or getattr(rec._local, "busy", False):
        return None
    return rec


def _safely(rec: Recorder, fn: Callable[..., None], *args: Any) -> None:
    """Run one recording step; whatever goes wrong in it taints the recording and never
    reaches the code being observed (an audit hook's exception would fail its open)."""
    rec._local.busy = True
    try:
        fn(*args)
    except Exception as exc:  # the observed call must behave as if nobody watched
        rec.taint = f"not recorded: {exc!r}"
    finally:
        rec._local.busy = False


def _audit(name: str, args: tuple[Any, ...]) -> None:
    rec = _current()
    if rec is None or (name not in _EVENTS and not name.startswith(_TAINTS)):
        return
    _safely(rec, _event, rec, name, args)


def _event(rec: Recorder, name: str, args: tuple[Any, ...]) -> None:
    try:
        caller = sys._getframe(3).f_code.co_filename  # _event ← _safely ← _audit ← caller
    except ValueError:
        caller = ""
    if not caller.startswith(_IMPORTS):
        rec.event(name, args)


_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


def _stat(path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> Any:
    rec = _current()
    if rec is not None:
        _safely(rec, rec.stat, path, dir_fd, follow_symlinks)
    return _REAL["stat"](path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


def _lstat(path: Any, *, dir_fd: int | None = None) -> Any:
    rec = _current()
    if rec is not None:
        _safely(rec, rec.stat, path, dir_fd, False)
    return _REAL["lstat"](path, dir_fd=dir_fd)


def _readlink(path: Any, *, dir_fd: int | None = None) -> Any:
    rec = _current()
    if rec is not None:
        _safely(rec, rec.readlink, path, dir_fd)
    return _REAL["readlink"](path, dir_fd=dir_fd)


def _access(path: Any, mode: int, **kw: Any) -> Any:
    rec = _current()
    if rec is not None:
        _safely(rec, rec.access, path, mode, kw)
    return _REAL["access"](path, mode, **kw)


def _open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> Any:
    # The audit event of an open carries no dir_fd: such a path is not what it says.
    rec = _current()
    if rec is not None and dir_fd is not None:
        rec.taint = "an open relative to a directory fd"
    return _REAL["open"](path, flags, mode, dir_fd=dir_fd)


_PATCHES: dict[str, Callable[..., Any]] = {
    "stat": _stat, "lstat": _lstat, "readlink": _readlink, "access": _access, "open": _open}


@contextmanager
def recording(rec: Recorder | None) -> Iterator[None]:
    """Record into `rec` what the block observes (nothing when `rec` is None). Not
    re-entrant; the os functions are the real ones again when the block ends."""
    if rec is None:
        yield
        return
    start(rec)
    try:
        yield
    finally:
        stop()


def start(rec: Recorder) -> None:
    """Record into `rec` until stop(); the caller makes sure stop() runs."""
    global _active, _hooked
    if _active is not None:
        raise RuntimeError("a recording is already running")
    if not _hooked:
        sys.addaudithook(_audit)  # cannot be removed: it does nothing outside a recording
        _hooked = True
    # What the os module holds now is what the wrappers call and what stop() puts back.
    _REAL.update({name: getattr(os, name) for name in _PATCHES})
    for name, fn in _PATCHES.items():
        setattr(os, name, fn)
    _active = rec


def stop() -> None:
    """End the recording (before a build: its reads are not observations of the check).
    Does nothing when none runs."""
    global _active
    if _active is None:
        return
    _active = None
    for name, fn in _REAL.items():
        setattr(os, name, fn)
