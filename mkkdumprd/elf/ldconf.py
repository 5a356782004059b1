"""/etc/ld.so.conf as ldconfig reads it: directories, `include` globs, `hwcap` lines.

ld.so itself never reads this file; ldconfig turns it into ld.so.cache. It is consulted
only for a view without a cache (a bare sysroot), to find what ldconfig would have listed.
"""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

from mkkdumprd.host import Host

LD_SO_CONF = "/etc/ld.so.conf"
_MAX_DEPTH = 16


def ld_so_conf_dirs(view: Host, conf: str = LD_SO_CONF) -> tuple[PurePosixPath, ...]:
    out: list[PurePosixPath] = []
    _read(view, PurePosixPath(conf), out, 0)
    return tuple(dict.fromkeys(out))


def _read(view: Host, conf: PurePosixPath, out: list[PurePosixPath], depth: int) -> None:
    text = view.read_optional(conf)
    if text is None or depth > _MAX_DEPTH:
        return
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word == "include":
            for pattern in rest.split():
                for inc in _glob(view, conf.parent, pattern):
                    _read(view, inc, out, depth + 1)
        elif word == "hwcap":
            continue
        else:
            # ldconfig accepts "dir", "dir=TYPE" and lists split by blanks, ':' or ','.
            for item in line.replace(",", " ").replace(":", " ").replace("\t", " ").split():
                d = item.split("=", 1)[0].rstrip("/") or "/"
                if d.startswith("/"):
                    out.append(PurePosixPath(d))


def _glob(view: Host, base: PurePosixPath, pattern: str) -> list[PurePosixPath]:
    """Expand an include glob inside the view (only the last component may have wildcards,
    which is all ldconfig configurations use in practice)."""
    pat = PurePosixPath(pattern) if pattern.startswith("/") else base / pattern
    if not any(c in pat.name for c in "*?["):
        return [pat]
    names = view.listdir(pat.parent)
    return [pat.parent / n for n in sorted(fnmatch.filter(names, pat.name))]
