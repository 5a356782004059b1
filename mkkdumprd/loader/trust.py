"""Which files may be loaded as the capture image: root's own, writable by no one else.

What is loaded runs as the capture kernel's /init with full access to the crashed
machine's memory and disks. A file another user owns, or may write (group/other write
bits), could have been replaced between the build and the load, so it is refused. The
check runs on the open file descriptor that is handed to kexec_file_load, so the file
checked is the file loaded. An image whose build recorded its digest (image/integrity.py)
must also still match it.

Standard library only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mkkdumprd.errors import OperationError
from mkkdumprd.image.integrity import verify_loadable


def check_capture_image(fd: int, shown: str, path: Path | None = None) -> None:
    """Raise OperationError unless the open file `fd` is a regular file owned by root (or
    by the caller, for a load that the kernel will refuse to a non-root caller anyway)
    and not writable by group or others."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OperationError(f"{shown} is not a regular file; refusing to load it as the "
                             "capture image")
    if st.st_uid not in (0, os.geteuid()):
        raise OperationError(
            f"{shown} is owned by uid {st.st_uid}, not root; refusing to load it as the "
            "capture image (rebuild it with `mkkdumprd build --force` as root)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OperationError(
            f"{shown} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            "refusing to load it as the capture image (rebuild it, or chmod go-w it)")
    if path is not None:
        damage = verify_loadable(fd, path)
        if damage is not None:
            raise OperationError(damage)
