"""This machine's python3 and the project's loader, as files of a guest initramfs.

The first stage runs mkkdumprd's own loader (`python3 -m mkkdumprd.loader`, standard
library only) in the guest. It gets the distribution's /usr/bin/python3 with its shared
libraries, the standard-library modules the loader imports and nothing else, the loader's
own source files under LOADER_ROOT (PYTHONPATH) with their arch data.

Which modules the loader needs is not a hand-kept list: `loader_trace.py` runs every loader
path with the same interpreter on the host (fake root, fake syscall) and reports
sys.modules. The stdlib goes in as the distribution's compiled bytecode placed where the
source would be (sourceless .pyc: no source to ship, nothing compiled in the guest); the
loader goes in as its .py sources. The host needs python3 >= 3.11 of the guest's
architecture with a byte-compiled standard library (Debian and Fedora ship one).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mkkdumprd
from mkkdumprd.errors import UsageError
from mkkdumprd.image.spec import Entry, file_entry, symlink_entry
from mkkdumprd.vmtest.guest_files import host_binary

# The distribution's interpreter, not a venv's: its stdlib is compiled and packaged.
GUEST_PYTHON = Path("/usr/bin/python3").resolve()
STDLIB = Path("/usr/lib") / GUEST_PYTHON.name
LOADER_ROOT = "/opt/mkkdumprd"
# The folder holding the mkkdumprd package: a checkout or site-packages.
PKG_ROOT = Path(mkkdumprd.__file__).resolve().parents[1]
TRACER = Path(__file__).with_name("loader_trace.py")
# Imported on the host through site.py's hooks (Debian's sitecustomize, setuptools' .pth);
# the guest has neither the hooks nor dist-packages.
_HOST_ONLY = {"__main__", "sitecustomize", "_distutils_hack"}
LOADER = "python3 -m mkkdumprd.loader"


@dataclass(frozen=True)
class Module:
    file: Path
    cached: Path | None     # the interpreter's compiled bytecode of `file`, if it has one


def trace_loader_modules(kernel: Path) -> dict[str, Module]:
    """The modules `python3 -m mkkdumprd.loader` imports, traced with GUEST_PYTHON."""
    return dict(_trace(kernel))


@functools.cache
def _trace(kernel: Path) -> tuple[tuple[str, Module], ...]:
    version = re.fullmatch(r"python3\.(\d+)", GUEST_PYTHON.name)
    if not GUEST_PYTHON.is_file() or not version or int(version.group(1)) < 11:
        raise UsageError(f"{GUEST_PYTHON} is not a python >= 3.11; the guest runs "
                         "mkkdumprd's loader with this machine's /usr/bin/python3 "
                         "(package python3)")
    with tempfile.TemporaryDirectory(prefix="mkkdumprd-trace-") as scratch:
        r = subprocess.run([str(GUEST_PYTHON), "-I", str(TRACER), str(PKG_ROOT), str(kernel),
                            scratch], capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "MKKDUMPRD_FORBID_KEXEC": "1"})
    if r.returncode != 0:
        raise UsageError(f"tracing the loader's imports with {GUEST_PYTHON} failed "
                         f"(rc {r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    mods: dict[str, dict[str, str | None]] = json.loads(r.stdout)
    return tuple((k, Module(Path(str(v["file"])), Path(v["cached"]) if v["cached"] else None))
                 for k, v in mods.items() if k not in _HOST_ONLY)


def python_entries(modules: dict[str, Module]) -> list[Entry]:
    """The interpreter and the traced standard library (pyc only, at the source's path)."""
    entries = list(host_binary(GUEST_PYTHON, "the interpreter for the project's loader"))
    entries.append(symlink_entry("/usr/bin/python3", GUEST_PYTHON.name, "python3 on PATH"))
    extensions: list[str] = []
    seen: set[Path] = set()
    for mod in modules.values():
        path, cached = mod.file, mod.cached
        if not path.is_relative_to(STDLIB) or path in seen:
            continue
        seen.add(path)
        if path.suffix == ".so":
            extensions.append(str(path))
        elif path.suffix == ".py":
            if cached is None or not cached.exists():
                raise UsageError(f"no compiled bytecode for {path} ({cached}): the "
                                 "distribution's stdlib is not byte-compiled")
            entries.append(file_entry(str(path.with_suffix(".pyc")), cached,
                                      f"stdlib module the loader imports ({path.name})",
                                      mode=0o644))
    # Extension modules with their libraries (_ctypes needs libffi, _lzma liblzma).
    if extensions:
        entries.extend(host_binary_many(extensions, "stdlib extension the loader imports"))
    # The interpreter and its extensions share libc & co.: one entry per path.
    return list({str(e.path): e for e in entries}.values())


def host_binary_many(paths: Sequence[str], reason: str) -> list[Entry]:
    out: dict[str, Entry] = {}
    for p in paths:
        for e in host_binary(p, reason):
            out.setdefault(str(e.path), e)
    return list(out.values())


def loader_entries(modules: dict[str, Module], arch: str = "x86_64") -> list[Entry]:
    """The project's files the loader runs from, under LOADER_ROOT, and its arch data."""
    pkg = PKG_ROOT / "mkkdumprd"
    entries: list[Entry] = []
    for path in sorted({m.file for m in modules.values()}):
        if path.is_relative_to(pkg) and path.suffix == ".py":
            rel = path.relative_to(PKG_ROOT)
            entries.append(file_entry(f"{LOADER_ROOT}/{rel}", path,
                                      "mkkdumprd loader source", mode=0o644))
    if not entries:
        raise UsageError(f"the trace shows no module of {pkg}; is the tracer broken?")
    entries.append(arch_data_entry(arch))
    return entries


def arch_data_entry(arch: str) -> Entry:
    """arch/<arch>.toml where the loader under LOADER_ROOT finds its package data."""
    toml = PKG_ROOT / "mkkdumprd" / "data" / "arch" / f"{arch}.toml"
    return file_entry(f"{LOADER_ROOT}/{toml.relative_to(PKG_ROOT)}", toml, "arch data",
                      mode=0o644)
