"""The one door to libarchive: its C library found, or one sentence saying what to install.

Only the image reader uses it, for the formats without a stdlib or zstandard decoder (lz4,
lzo); the writer writes the newc records itself (image/writer.py), so a build needs no
libarchive.

pip cannot bring the C library: without it, libarchive-c's import fails with
`AttributeError: ... undefined symbol: archive_version_number` (it dlopens nothing and looks
the symbol up in the python binary). `require()` turns that into one line naming the package.
"""

from __future__ import annotations

import functools
import os
import sys
from types import ModuleType

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
