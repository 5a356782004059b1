"""The one door to libarchive: its C library found (or one sentence saying what to
install), and the entry functions the newc writer needs bound here on the library handle.

The python binding (libarchive-c) differs between releases in which C functions it wraps:
2.9 (Debian bookworm's python3-libarchive-c) has no `entry_set_uid`/`gid`/`rdevmajor`/
`rdevminor`, and declares `entry_set_mtime` with a C int. The C functions themselves are in
every libarchive 3.x, so they are bound here with their real C signatures, the same on every
binding release (tests/unit/test_image_oldest_libs.py runs the image tests on the oldest).

pip cannot bring the C library: without it, libarchive-c's import fails with
`AttributeError: ... undefined symbol: archive_version_number` (it dlopens nothing and looks
the symbol up in the python binary). `require()` turns that into one line naming the package.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from types import ModuleType
from typing import Any

from mkkdumprd.errors import OperationError

MISSING = ("libarchive's C library (libarchive.so.13) is not installed: install it with "
           "`apt-get install libarchive13` (Debian/Ubuntu; libarchive13t64 on Ubuntu 24.04+) "
           "or `dnf install libarchive` (Fedora), then run mkkdumprd again")


@functools.cache
def _import() -> tuple[ModuleType, ModuleType] | None:
    # On first use, not at import: the up-to-date check reads the manifest with the stdlib
    # decoders and should not pay for loading libarchive (about 14 ms).
    # libarchive-c finds the library with ctypes.util.find_library, which runs
    # `ldconfig -p` (10-15 ms of a cold build); when its LIBARCHIVE variable is unset, the
    # soname every libarchive 3.x has is given to it first (dlopen finds it as ld.so does),
    # and only if that fails is the import tried again its own way.
    if os.environ.get("LIBARCHIVE") is None:
        os.environ["LIBARCHIVE"] = SONAME
        try:
            return _import_binding()
        except (AttributeError, OSError):
            for name in [m for m in sys.modules
                         if m == "libarchive" or m.startswith("libarchive.")]:
                del sys.modules[name]
        finally:
            os.environ.pop("LIBARCHIVE", None)  # not handed on to the commands we run
    try:
        return _import_binding()
    except (AttributeError, OSError):
        return None


SONAME = "libarchive.so.13"


def _import_binding() -> tuple[ModuleType, ModuleType]:
    import libarchive
    import libarchive.ffi

    return libarchive, libarchive.ffi


def require() -> tuple[ModuleType, ModuleType]:
    """(libarchive, libarchive.ffi), or OperationError naming the package to install."""
    loaded = _import()
    if loaded is None:
        raise OperationError(MISSING)
    return loaded


def _bind(name: str, argtypes: list[Any]) -> Any:
    """A fresh function object for archive_NAME (indexing the CDLL, not attribute access,
    so the binding's own cached declaration of the same function is left untouched)."""
    _, ffi = require()
    f = ffi.libarchive["archive_" + name]
    f.argtypes = argtypes
    f.restype = None
    return f


_P = ctypes.c_void_p


class EntryABI:
    """archive_entry_* setters with the C prototypes of archive_entry.h (libarchive 3.x)."""

    def __init__(self) -> None:
        self.set_filetype = _bind("entry_set_filetype", [_P, ctypes.c_uint])
        self.set_perm = _bind("entry_set_perm", [_P, ctypes.c_uint])  # mode_t
        self.set_uid = _bind("entry_set_uid", [_P, ctypes.c_int64])  # la_int64_t
        self.set_gid = _bind("entry_set_gid", [_P, ctypes.c_int64])
        self.set_mtime = _bind("entry_set_mtime", [_P, ctypes.c_int64, ctypes.c_long])  # time_t
        self.set_ino64 = _bind("entry_set_ino64", [_P, ctypes.c_int64])
        self.set_nlink = _bind("entry_set_nlink", [_P, ctypes.c_uint])
        self.set_rdevmajor = _bind("entry_set_rdevmajor", [_P, ctypes.c_uint64])  # dev_t
        self.set_rdevminor = _bind("entry_set_rdevminor", [_P, ctypes.c_uint64])
        self.set_size = _bind("entry_set_size", [_P, ctypes.c_int64])
        self.copy_pathname = _bind("entry_copy_pathname", [_P, ctypes.c_char_p])
        self.copy_symlink = _bind("entry_copy_symlink", [_P, ctypes.c_char_p])
