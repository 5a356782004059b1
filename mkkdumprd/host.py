"""The one object through which mkkdumprd reads the machine it runs on (or builds for).

Everything that looks at /proc, /sys, /etc, /lib/modules or a sysroot goes through a
Host, so tests hand in a fake tree and cross builds hand in a foreign-arch root.
Paths given to its methods are absolute paths *as the described system sees them*;
symlinks are followed inside the root, never out of it.

Besides files, a Host holds the few things that only make sense on the running machine:
`is_live` (may we ask this process's resolver, connect, run ssh?), and the probes
`probe_dns`, `probe_tcp` and `run` that do so, which tests replace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import BinaryIO

from mkkdumprd.errors import OperationError

_MAX_SYMLINKS = 40
_SLASH = Path("/")
# A path as the host's root sees it (absolute); a real Path is taken the same way.
HostPath = str | PurePath
MOUNTINFO = "/proc/self/mountinfo"
MEMINFO = "/proc/meminfo"
_OCTAL = re.compile(r"\\([0-7]{3})")


class HostError(OperationError, OSError):
    """A file of the host cannot be read: one line naming it. Still an OSError, so the
    readers that tolerate unreadable files (sysfs attributes, optional inputs) keep doing so."""

    def __str__(self) -> str:
        # OSError would print "[Errno N] ..." once errno/strerror are set; ours is the line.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, with its octal escapes (\\040 ...) decoded."""

    majmin: str          # st_dev of the filesystem, "MAJ:MIN"
    root: str            # the directory of the filesystem mounted here (bind mounts: not /)
    mountpoint: str
    options: str         # per-mount options (rw, relatime, ...)
    fstype: str
    source: str
    superopts: str       # the filesystem's own options


@dataclass(frozen=True)
class Ran:
    """What a command run on the host returned."""

    returncode: int
    stdout: str
    stderr: str


# (address, port, timeout in seconds) → None when a connection was made, else why not.
TcpProbe = Callable[[str, int, float], "str | None"]
# name → the addresses this machine's resolver gives for it (empty when none).
NameLookup = Callable[[str], "list[str]"]
# (argv, timeout in seconds or None) → its outcome; raises OperationError when it cannot run.
Runner = Callable[[Sequence[str], "float | None"], Ran]


# socket and subprocess are imported by the probes that use them: an up-to-date build
# reads files only.


def connect_tcp(address: str, port: int, timeout: float) -> str | None:
    import socket

    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def lookup_name(name: str) -> list[str]:
    import socket

    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [str(i[4][0]).split("%")[0] for i in infos]


def run_command(argv: Sequence[str], timeout: float | None) -> Ran:
    import subprocess

    try:
        r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationError(f"cannot run {argv[0]}: {exc}") from None
    return Ran(r.returncode, r.stdout, r.stderr)


def unescape_mount_field(text: str) -> str:
    """mountinfo's and fstab's octal escapes (space, tab, newline, backslash) decoded."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a /proc/PID/mountinfo text, in its order (proc(5))."""
    out: list[Mount] = []
    for line in text.splitlines():
        words = line.split()
        if "-" not in words[6:]:
            continue
        sep = words.index("-", 6)
        if len(words) < sep + 3:
            continue
        out.append(Mount(
            majmin=words[2], root=unescape_mount_field(words[3]),
            mountpoint=unescape_mount_field(words[4]), options=words[5],
            fstype=words[sep + 1], source=unescape_mount_field(words[sep + 2]),
            superopts=words[sep + 3] if len(words) > sep + 3 else "",
        ))
    return out


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as name → bytes (values given in kB are scaled; counts kept)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or not words or not words[0].isdigit():
            continue
        out[name] = int(words[0]) * (1024 if words[1:2] == ["kB"] else 1)
    return out


@dataclass(frozen=True)
class Host:
    """The machine as the build reads it: files under `root` and, when live, /proc, /sys, /dev."""

    root: Path = Path("/")
    # None: live when the root is this machine's /. Tests set it to run the live-only
    # checks on a fake tree (with probes replaced).
    live: bool | None = None
    probe_tcp: TcpProbe = field(default=connect_tcp, compare=False, repr=False)
    probe_dns: NameLookup = field(default=lookup_name, compare=False, repr=False)
    run: Runner = field(default=run_command, compare=False, repr=False)

    @classmethod
    def this_machine(cls) -> Host:
        return cls(Path("/"))

    @property
    def is_live(self) -> bool:
        """The running machine itself: its resolver, network and commands are ours to use."""
        if self.live is not None:
            return self.live
        return self.root.resolve() == Path("/")

    def path(self, p: HostPath) -> Path:
        """The real path on this machine of `p` (an absolute path inside the root)."""
        rel = str(p).lstrip("/")
        return self.root / rel if rel else self.root

    def real(self, p: HostPath) -> Path:
        """The real path of `p` with its symlinks resolved inside the root."""
        if self.root == _SLASH:
            # The kernel resolves exactly as resolve() does when the root is /: skip the
            # per-component walk on the hot paths (a .modinfo scan opens 4000 files).
            return self.path(p)
        return self.path(self.resolve(p))

    def resolve(self, p: HostPath) -> PurePosixPath:
        """Canonical absolute path inside the root, with symlinks followed within it.

        Like realpath(3) run with this root as '/': an absolute link target is taken
        relative to the root, '..' never climbs above it. Missing tails are kept as given.
        """
        return self.resolve_links(p)[0]

    def resolve_links(
        self, p: HostPath
    ) -> tuple[PurePosixPath, list[tuple[PurePosixPath, str]]]:
        """resolve(), plus every symlink crossed on the way as (link path, its target),
        in the order the walk met them (an image must carry them to keep paths working)."""
        parts = [x for x in PurePosixPath("/", str(p)).parts[1:]]
        done: list[str] = []
        links: list[tuple[PurePosixPath, str]] = []
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join([*done, name])
            real = self.path(candidate)
            if real.is_symlink():
                if len(links) >= _MAX_SYMLINKS:
                    raise HostError(f"{self.path(p)}: too many levels of symbolic links "
                                    f"at {candidate}")
                target = self.readlink(candidate)
                links.append((PurePosixPath(candidate), target))
                if target.startswith("/"):
                    done = []
                parts = [x for x in PurePosixPath(target).parts if x != "/"] + parts
                continue
            done.append(name)
        return PurePosixPath("/" + "/".join(done)), links

    def exists(self, p: HostPath) -> bool:
        return self.real(p).exists()

    def is_file(self, p: HostPath) -> bool:
        return self.real(p).is_file()

    def is_dir(self, p: HostPath) -> bool:
        return self.real(p).is_dir()

    def is_symlink(self, p: HostPath) -> bool:
        return self.path(p).is_symlink()

    def is_executable(self, p: HostPath) -> bool:
        """A regular file this process may execute (as the machine's exec would check)."""
        real = self.real(p)
        return real.is_file() and os.access(real, os.X_OK)

    def is_writable_dir(self, p: HostPath) -> bool:
        """A directory this process may create files in (access(2) also says no for a
        read-only mount, even to root)."""
        real = self.real(p)
        return real.is_dir() and os.access(real, os.W_OK)

    def readlink(self, p: HostPath) -> str:
        try:
            return os.readlink(self.path(p))
        except OSError as exc:
            raise _error(self.path(p), exc) from None

    def read_bytes(self, p: HostPath) -> bytes:
        real = self.real(p)
        try:
            return real.read_bytes()
        except OSError as exc:
            raise _error(real, exc) from None

    def read_head(self, p: HostPath, size: int) -> bytes:
        """The first line of `p`, at most `size` bytes (a script's #! line)."""
        real = self.real(p)
        try:
            with open(real, "rb") as f:
                return f.readline(size)
        except OSError as exc:
            raise _error(real, exc) from None

    def open(self, p: HostPath) -> BinaryIO:
        """`p` opened for binary reading (for readers that stream: decompressors)."""
        real = self.real(p)
        try:
            return open(real, "rb")
        except OSError as exc:
            raise _error(real, exc) from None

    def read_text(self, p: HostPath, errors: str = "strict") -> str:
        real = self.real(p)
        try:
            return real.read_text(encoding="utf-8", errors=errors)
        except OSError as exc:
            raise _error(real, exc) from None

    def read_optional(self, p: HostPath) -> str | None:
        """Text of `p`, or None when it does not exist or cannot be read (sysfs attrs)."""
        try:
            return self.read_text(p, errors="replace")
        except OSError:
            return None

    def can_read(self, p: HostPath, size: int = 512) -> str | None:
        """None when `size` bytes of `p` can be read (a device, as dd would), else why not."""
        try:
            with open(self.real(p), "rb") as f:
                f.read(size)
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def listdir(self, p: HostPath) -> list[str]:
        real = self.real(p)
        try:
            return sorted(os.listdir(real))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise _error(real, exc) from None

    def stat(self, p: HostPath) -> os.stat_result:
        real = self.real(p)
        try:
            return real.stat()
        except OSError as exc:
            raise _error(real, exc) from None

    def walk_files(self, p: HostPath) -> Iterator[PurePosixPath]:
        """Every regular file or symlink below `p`, as root-relative paths, in sorted order."""
        base = self.real(p)
        top = PurePosixPath("/", str(self.resolve(p)))
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(base)
            for name in sorted(filenames):
                yield top / PurePosixPath(*rel.parts) / name if rel.parts else top / name

    def which(self, name: str, search: tuple[str, ...] | None = None) -> PurePosixPath | None:
        """First executable called `name` on the root's PATH (or `search`)."""
        dirs = search or (
            "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
        )
        if "/" in name:
            return PurePosixPath(name) if self.is_file(name) else None
        for d in dirs:
            cand = PurePosixPath(d) / name
            if self.is_executable(cand):
                return cand
        return None

    def mounts(self) -> list[Mount]:
        """The machine's mount table (empty when it has no /proc/self/mountinfo)."""
        return parse_mountinfo(self.read_optional(MOUNTINFO) or "")

    def mount_of(self, path: HostPath) -> Mount | None:
        """The mount holding `path` (symlinks resolved): the last one mounted on the
        longest mount point that contains it."""
        target = str(self.resolve(path))
        best: Mount | None = None
        for m in self.mounts():
            mp = m.mountpoint.rstrip("/") or "/"
            if (target == mp or target.startswith(mp + "/") or mp == "/") and (
                    best is None or len(mp) >= len(best.mountpoint.rstrip("/") or "/")):
                best = m
        return best

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo in bytes (empty when unreadable)."""
        return parse_meminfo(self.read_optional(MEMINFO) or "")


def _error(path: Path, exc: OSError) -> HostError:
    err = HostError(f"cannot read {path}: {exc.strerror or exc}")
    err.errno, err.strerror, err.filename = exc.errno, exc.strerror, str(path)
    return err
