"""Sysroots made from this machine's own files, for tests that need a root they control.

One helper for every test that copies real binaries into a temporary root: the builder
tests (busybox, makedumpfile, kdump_pre scripts), the freshness tests, the ELF entry and
`deps libs --sysroot` tests (ls with a vendor ld.so.conf).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath


def _mirror(root: Path, path: str) -> None:
    """Recreate host `path` under `root`: every symlink on the way, then the file."""
    parts = [p for p in PurePosixPath(path).parts[1:]]
    done: list[str] = []
    for _ in range(40):
        if not parts:
            break
        name = parts.pop(0)
        host = Path("/", *done, name)
        dest = root.joinpath(*done, name)
        if host.is_symlink():
            target = os.readlink(host)
            if not dest.is_symlink():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(target)
            if target.startswith("/"):
                done = []
            parts = [x for x in PurePosixPath(target).parts if x != "/"] + parts
            continue
        done.append(name)
    real = Path("/", *done)
    dest = root.joinpath(*done)
    if real.is_file() and not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest)


def ldd_libraries(binary: str) -> list[str]:
    """The libraries `ldd` lists for `binary` (the oracle the copies are checked against)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            libs.append(words[words.index("=>") + 1])
        elif words and words[0].startswith("/"):
            libs.append(words[0])
    return [x for x in libs if x.startswith("/")]


def make_sysroot(root: Path, binaries: Sequence[str], *, ld_so_cache: bool = True,
                 ld_so_conf: Mapping[str, str] | None = None) -> Path:
    """A sysroot at `root` holding this machine's `binaries` and the libraries ldd lists
    for them, every symlink on the way kept (merged /usr: /bin -> usr/bin, /lib64/ld-linux
    -> /lib/...), plus this machine's /etc/ld.so.cache unless `ld_so_cache` is False.
    `ld_so_conf` maps /etc paths to contents (ld.so.conf and its includes)."""
    root.mkdir(parents=True, exist_ok=True)
    for top in ("bin", "sbin", "lib", "lib64"):
        if Path("/", top).is_symlink() and not (root / top).is_symlink():
            (root / top).symlink_to(os.readlink(Path("/", top)))
    for b in binaries:
        _mirror(root, b)
        for lib in ldd_libraries(b):
            _mirror(root, lib)
    if ld_so_cache and Path("/etc/ld.so.cache").exists():
        _mirror(root, "/etc/ld.so.cache")
    for path, text in (ld_so_conf or {}).items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    return root
