"""One observation of the machine: what a run asked (a kind and a path) and what it got,
as a fingerprint string; the same function computes it when the full check records it and
when the fast path replays it, so "every fingerprint equal" means "every answer equal".

Kinds (the path is bytes, relative paths are taken from the keyed working directory):

- stat, lstat: the whole stat result but the access time (type, mode, inode, device,
  links, owner, size, mtime_ns, ctime_ns, rdev), or the errno. A regular file opened for
  reading is recorded as `stat` too: its identity stands for its content, as for make and
  git, made stronger by ctime (which only the kernel sets: any write, chmod or rename
  changes it) and the inode (a file replaced by rename is another inode). A directory's
  identity leaves out its links, size and times: what it holds is a `list` observation
  when the check read it (a check never judges a directory by its times), and those
  fields move whenever any process adds or removes an entry beside the paths the check
  only looked through (a file renamed into /etc, anything in /tmp), which made the stamp
  fail to hold for no change the check could see.
- pstat, plstat: the same for a path on /proc or /sys, mode only (their inodes and times
  differ per process and say nothing about the values).
- content: the bytes of a /proc or /sys file the check read (mtimes there do not follow
  the values), at most CONTENT_MAX.
- open: an open that failed (its errno; the replay opens again).
- readlink: the link's target, or the errno.
- list: a directory's names, each with whether it is a symlink, a directory, a file (as
  os.scandir's entries answer), or the errno.
- access0 ... access7: os.access(path, mode).

Standard library only: the fast path imports it before anything else.
"""

from __future__ import annotations

import os
import stat

CONTENT_MAX = 1 << 20
KINDS = frozenset({"stat", "lstat", "pstat", "plstat", "content", "open", "readlink", "list",
                   *(f"access{m}" for m in range(8))})
_PSEUDO_MOUNTS = (b"/proc", b"/sys")
_PSEUDO_ROOTS = _PSEUDO_MOUNTS  # path prefixes (a test adds a fake machine's /proc)


class Unrecordable(Exception):
    """What was asked cannot be replayed by a fingerprint (a device opened, a huge /proc
    file): the run is not stamped."""


def _error(exc: OSError) -> str:
    return f"E{exc.errno}"


def _identity(st: os.stat_result) -> str:
    if stat.S_ISDIR(st.st_mode):
        # Same fields, links/size/times zero: a directory's times move with every entry
        # any process adds or removes beside the paths a check looks through (/etc, /tmp).
        return f"{st.st_mode}:{st.st_ino}:{st.st_dev}:0:{st.st_uid}:{st.st_gid}:0:0:0:0"
    return (f"{st.st_mode}:{st.st_ino}:{st.st_dev}:{st.st_nlink}:{st.st_uid}:{st.st_gid}:"
            f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_rdev}")


def is_pseudo(path: bytes) -> bool:
    """A path on /proc or /sys, by its absolute spelling (symlinks into them are found by
    the caller through the device number)."""
    p = os.path.abspath(path)
    return any(p == r or p.startswith(r + b"/") for r in _PSEUDO_ROOTS)


def pseudo_devices() -> frozenset[int]:
    out: set[int] = set()
    for r in _PSEUDO_MOUNTS:
        try:
            dev = os.stat(r).st_dev
        except OSError:
            continue
        out.add(dev)
    return frozenset(out)


def fingerprint(kind: str, path: bytes) -> str:
    """What `kind` of look at `path` answers now (Unrecordable: it cannot be compared)."""
    if kind in ("stat", "lstat", "pstat", "plstat"):
        try:
            st = os.stat(path, follow_symlinks=kind in ("stat", "pstat"))
        except OSError as exc:
            return _error(exc)
        return _identity(st) if kind in ("stat", "lstat") else f"M{st.st_mode}"
    if kind == "content":
        return _content(path)
    if kind == "open":
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return _error(exc)
        os.close(fd)
        return "ok"
    if kind == "readlink":
        try:
            return "L" + os.fsencode(os.readlink(path)).hex()
        except OSError as exc:
            return _error(exc)
    if kind == "list":
        return _listing(path)
    if kind.startswith("access") and kind in KINDS:
        return "1" if os.access(path, int(kind[6:])) else "0"
    raise Unrecordable(f"unknown observation {kind!r}")


def _content(path: bytes) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return _error(exc)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unrecordable(f"{os.fsdecode(path)} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > CONTENT_MAX:
                raise Unrecordable(f"{os.fsdecode(path)} is larger than {CONTENT_MAX} bytes")
    except OSError as exc:
        return _error(exc)
    finally:
        os.close(fd)
    return "C" + b"".join(chunks).hex()


def _listing(path: bytes) -> str:
    names: list[str] = []
    try:
        with os.scandir(path) as it:
            for e in it:
                kind = ("l" if e.is_symlink() else "") + (
                    "d" if e.is_dir() else "f" if e.is_file() else "o")
                names.append(f"{e.name.hex()}.{kind}")
    except OSError as exc:
        return _error(exc)
    names.sort()
    return "D" + ",".join(names)
