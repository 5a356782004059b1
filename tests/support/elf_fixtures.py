"""Small ELF fixtures compiled with gcc for the ELF closure tests, plus `ldd` as oracle."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def build_lib(path: Path, soname: str | None = None, links: tuple[Path, ...] = (),
              ldflags: tuple[str, ...] = (), body: str = "") -> Path:
    """A shared library at `path` exporting f_<soname>(), linked against `links`."""
    soname = soname or path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.parent / f".{path.name}.c"
    src.write_text(f"int f_{_ident(soname)}(void) {{ return 1; }}\n{body}")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(path), str(src),
                    f"-Wl,-soname,{soname}", *map(str, links), *ldflags],
                   check=True, capture_output=True)
    src.unlink()
    return path


def build_prog(path: Path, links: tuple[Path, ...] = (), ldflags: tuple[str, ...] = (),
               body: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.parent / f".{path.name}.c"
    src.write_text(f"{body}\nint main(void) {{ return 0; }}\n")
    subprocess.run(["gcc", "-o", str(path), str(src), "-Wl,--no-as-needed",
                    *map(str, links), *ldflags], check=True, capture_output=True)
    src.unlink()
    return path


def rpath(*dirs: str) -> tuple[str, ...]:
    return ("-Wl,--disable-new-dtags", "-Wl,-rpath," + ":".join(dirs))


def runpath(*dirs: str) -> tuple[str, ...]:
    return ("-Wl,--enable-new-dtags", "-Wl,-rpath," + ":".join(dirs))


def retag(path: Path, old: str, new_value: int) -> None:
    """Rewrite the d_tag of the dynamic entry `old` (e.g. DT_SONAME) in place.

    GNU ld never writes DT_RPATH and DT_RUNPATH together; this makes such an object.
    """
    with open(path, "rb") as f:
        elf = ELFFile(f)
        dyn: Any = elf.get_section_by_name(".dynamic")
        assert dyn is not None
        entsize = dyn["sh_entsize"]
        offset = None
        for i, tag in enumerate(dyn.iter_tags()):
            if tag.entry.d_tag == old:
                offset = dyn["sh_offset"] + i * entsize
                break
    assert offset is not None, f"{path} has no {old}"
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(new_value.to_bytes(8, "little"))


def ldd(path: Path) -> set[str]:
    """Real paths the real loader resolves for `path`; AssertionError on 'not found'."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}).stdout
    assert "not found" not in out, out
    found: set[str] = set()
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            found.add(os.path.realpath(line.split("=>", 1)[1].split(" (", 1)[0].strip()))
        elif line.startswith("/"):
            found.add(os.path.realpath(line.split(" (", 1)[0]))
    return found


def ldd_missing(path: Path) -> list[str]:
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}).stdout
    return [ln.split("=>")[0].strip() for ln in out.splitlines() if "not found" in ln]
