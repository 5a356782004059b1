"""Where this user's build cache lives, and whether that directory may be trusted.

Standard library only (os, stat): the up-to-date fast path (mkkdumprd/uptodate/stamp.py)
finds its stamp here before anything else is imported; assemble/cache.py uses the same
answers for its pickles.
"""

from __future__ import annotations

import os
import stat

ENV = "MKKDUMPRD_CACHE_DIR"


def cache_dir_name() -> str | None:
    """$MKKDUMPRD_CACHE_DIR if set (empty or "off": no cache), else /var/cache/mkkdumprd
    for root and $XDG_CACHE_HOME/mkkdumprd (~/.cache/mkkdumprd) for other users."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip() in ("", "off") else env
    if os.geteuid() == 0:
        return "/var/cache/mkkdumprd"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg.startswith("/"):
        return os.path.join(xdg, "mkkdumprd")
    home = os.path.expanduser("~")  # $HOME, else the passwd entry
    if home == "~":  # no HOME and no passwd entry: no cache
        return None
    return os.path.join(home, ".cache", "mkkdumprd")


def is_private_dir(d: str | os.PathLike[str]) -> bool:
    """A directory owned by this user that nobody else can write to (the cache holds
    pickles and up-to-date stamps: what others could plant there is never read)."""
    try:
        st = os.stat(d)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
