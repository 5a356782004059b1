"""The up-to-date stamp: `mkkdumprd build` finding its image current in a few milliseconds.

A full up-to-date check (assemble/freshness.py, behind the command line, kdump.conf's
parser and the build cache) costs ~90 ms of imports before it reads a file. When one
succeeded, `build` writes a stamp: the exact command line and what it printed, keyed by
everything outside the files that the run depends on, and every observation the run made
of the machine (uptodate/recorder.py: each file's identity, each /proc or /sys file's
content, each link, listing and existence). The next run with the same key replays those
observations before it imports click (mkkdumprd/__main__.py); when every one still gives
the same answer, the full check would have read the same bytes and decided the same, so it
prints the recorded output and exits 0. Anything else, including a stamp that is missing,
damaged, oversized, foreign-owned or from another version, falls through to the full path,
which writes the stamp again. `--force` never takes the fast path; kdump.conf's
force_rebuild never gets stamped (that run builds).

The key: the stamp format, mkkdumprd's version and location, the Python interpreter, the
arguments, the working directory, the user and groups, uname, and the environment
variables a build reads (ENV_NAMES, ENV_PREFIXES; tests/unit/test_uptodate_stamp.py finds
every one the code reads). The stamp lives in the build cache directory
(cache_location.py), which must be private to the user; the file's name is a checksum of
the key, and the key itself is stored and compared whole.

Standard library only (os, sys, stat, zlib): this module runs before anything else.
"""

from __future__ import annotations

import os
import stat
import sys
import zlib

from mkkdumprd import __version__
from mkkdumprd.cache_location import cache_dir_name, is_private_dir
from mkkdumprd.uptodate.observations import KINDS, Unrecordable, fingerprint

FORMAT = b"mkkdumprd-uptodate 2"  # 2: directories without their times
MAX_BYTES = 8 << 20
MAX_OBSERVATIONS = 100_000
MAX_STAMPS = 64  # per cache directory; the oldest go first
# A file whose ctime is this recent when the stamp is written could change again within
# the same timestamp tick (a jiffy) and keep its identity: git's "racily clean". Whole
# seconds: a filesystem with 1-second timestamps gets 2 s.
RACY_NS = 100_000_000
RACY_COARSE_NS = 2_000_000_000
ENV_NAMES = ("HOME", "XDG_CACHE_HOME", "SOURCE_DATE_EPOCH", "LIBARCHIVE", "PATH", "LANG",
             "LANGUAGE", "TZ")
ENV_PREFIXES = ("MKKDUMPRD", "PYTHON", "LC_")

# The arguments the process was started with, set by the entry point (mkkdumprd/__main__.py)
# before the command line runs; None when mkkdumprd runs as a library (no stamp then).
entry_argv: list[str] | None = None


def key(argv: list[str]) -> bytes:
    """Everything besides the machine's files that the run's outcome depends on."""
    import mkkdumprd

    env = sorted((k, v) for k, v in os.environ.items()
                 if k in ENV_NAMES or k.startswith(ENV_PREFIXES))
    parts = [
        FORMAT.decode(), __version__, os.path.dirname(os.path.abspath(mkkdumprd.__file__)),
        sys.executable, sys.version, os.getcwd(),
        f"{os.getuid()} {os.geteuid()} {os.getgid()} {os.getegid()} "
        f"{sorted(os.getgroups())}", "\t".join(os.uname()),
        *(f"{k}={v}" for k, v in env), "--", *argv,
    ]
    return "\0".join(parts).encode("utf-8", "surrogateescape")


def stamp_path(k: bytes) -> str | None:
    d = cache_dir_name()
    if d is None:
        return None
    return os.path.join(d, f"uptodate-{zlib.crc32(k):08x}{zlib.adler32(k):08x}.stamp")


# ---- the format ---------------------------------------------------------------------------
# FORMAT, "K <hex key>", "O <hex output>", one "<kind> <hex path> <fingerprint>" per
# observation, "END". Fingerprints hold no spaces or newlines (observations.py).

def encode(k: bytes, output: str, seen: list[tuple[str, bytes, str]]) -> bytes:
    lines = [FORMAT, b"K " + k.hex().encode(), b"O " + output.encode().hex().encode()]
    lines += [f"{kind} {path.hex()} {fp}".encode() for kind, path, fp in seen]
    lines.append(b"END")
    return b"\n".join(lines) + b"\n"


def decode(data: bytes, k: bytes) -> tuple[str, list[tuple[str, bytes, str]]] | None:
    """(the output, the observations) of a stamp for key `k`; None for anything else."""
    if len(data) > MAX_BYTES:
        return None
    lines = data.split(b"\n")
    if len(lines) < 5 or lines[0] != FORMAT or lines[-2:] != [b"END", b""]:
        return None
    if len(lines) - 5 > MAX_OBSERVATIONS or lines[1] != b"K " + k.hex().encode():
        return None
    if not lines[2].startswith(b"O "):
        return None
    try:
        output = bytes.fromhex(lines[2][2:].decode("ascii")).decode("ascii")
        seen: list[tuple[str, bytes, str]] = []
        for line in lines[3:-2]:
            kind, path, fp = line.decode("ascii").split(" ")
            if kind not in KINDS or not fp or not fp.isprintable():
                return None
            seen.append((kind, bytes.fromhex(path), fp))
    except ValueError:  # UnicodeDecodeError too
        return None
    if not seen or not stampable_output(output):
        return None  # a run that observed nothing (the image, at least) never wrote it
    return output, seen


def holds(seen: list[tuple[str, bytes, str]]) -> bool:
    """Every observation gives the answer it gave when it was recorded."""
    try:
        return all(fingerprint(kind, path) == fp for kind, path, fp in seen)
    except (Unrecordable, OSError, ValueError):
        return False


# ---- the fast path ------------------------------------------------------------------------

def current_output(argv: list[str]) -> str | None:
    """What `mkkdumprd ARGV` prints when its stamp holds (the run is then done, exit 0);
    None when the full path must run. Never raises."""
    if "--force" in argv:
        return None
    try:
        k = key(argv)
        path = stamp_path(k)
        if path is None:
            return None
        data = _read_private(path)
        found = decode(data, k) if data is not None else None
        if found is None or not holds(found[1]):
            return None
        return found[0]
    except Exception:  # a stamp is an optimisation: whatever goes wrong, run the full path
        return None


def _read_private(path: str) -> bytes | None:
    if not is_private_dir(os.path.dirname(path)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_size > MAX_BYTES):
            return None
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BYTES:
                return None
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


# ---- writing -----------------------------------------------------------------------------

def stampable_output(text: str) -> bool:
    """Output the fast path can print exactly as click did: printable ASCII lines."""
    return text.isascii() and all(line.isprintable() for line in text.split("\n"))


def _own_sources() -> list[tuple[str, bytes, str]]:
    """mkkdumprd's modules that this run used, by identity: the key names the version,
    and a checkout edited without a new version must not replay the old code's answer."""
    import mkkdumprd

    top = os.path.dirname(os.path.abspath(mkkdumprd.__file__)) + os.sep
    out: list[tuple[str, bytes, str]] = []
    for name, module in list(sys.modules.items()):
        f = getattr(module, "__file__", None)
        if (name == "mkkdumprd" or name.startswith("mkkdumprd.")) and isinstance(f, str) \
                and os.path.abspath(f).startswith(top):
            p = os.fsencode(os.path.abspath(f))
            out.append(("stat", p, fingerprint("stat", p)))
    return out


def _racy(seen: list[tuple[str, bytes, str]]) -> bool:
    import time

    now = time.time_ns()
    for kind, _path, fp in seen:
        if kind in ("stat", "lstat") and not fp.startswith("E"):
            ctime = int(fp.split(":")[8])
            window = RACY_COARSE_NS if ctime % 1_000_000_000 == 0 else RACY_NS
            if ctime > now - window:
                return True
    return False


def cache_ignore() -> tuple[str, ...]:
    """What a recording must not take as observations: the build cache directory."""
    d = cache_dir_name()
    return () if d is None else (d,)


def save(argv: list[str], output: str, seen: dict[tuple[str, bytes], str]) -> bool:
    """Write the stamp for `argv`, when every observation still holds (a file changed
    during the check means no stamp). Failures are silent: the stamp is an optimisation."""
    if "--force" in argv or not stampable_output(output):
        return False
    k = key(argv)
    path = stamp_path(k)
    if path is None:
        return False
    observations = [(kind, p, fp) for (kind, p), fp in seen.items()] + _own_sources()
    if _racy(observations) or not holds(observations):
        return False
    from pathlib import Path

    from mkkdumprd.atomic_file import atomic_write

    d = os.path.dirname(path)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        if not is_private_dir(d):
            return False
        # Not fsynced: after a power cut an empty or old stamp only asks for a full check.
        atomic_write(Path(path), encode(k, output, observations), 0o600, durable=False)
    except OSError:
        return False
    _sweep(d)
    return True


def _sweep(d: str) -> None:
    """Keep the newest MAX_STAMPS stamps (one per command line, working directory, ...)."""
    try:
        found = [(e.stat().st_mtime_ns, e.path) for e in os.scandir(d)
                 if e.name.startswith("uptodate-") and e.name.endswith(".stamp")]
        found.sort()
        for _mtime, old in found[:-MAX_STAMPS]:
            os.unlink(old)
    except OSError:
        pass

