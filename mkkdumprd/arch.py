"""Per-architecture facts, read from mkkdumprd/data/arch/<name>.toml (one file per arch).

The loader imports this module, so it stays standard-library only (tomllib, platform).
"""

from __future__ import annotations

import platform
import tomllib
from dataclasses import dataclass
from functools import cache
from typing import Any

from mkkdumprd.crashkernel.size import parse_size
from mkkdumprd.errors import UsageError
from mkkdumprd.resources import data_dir

ARCHES: tuple[str, ...] = ("x86_64", "aarch64", "ppc64le", "s390x", "riscv64")

_ALIASES = {
    "amd64": "x86_64", "x86-64": "x86_64", "x64": "x86_64",
    "arm64": "aarch64", "aarch64_be": "aarch64",
    "ppc64el": "ppc64le", "powerpc64le": "ppc64le",
    "s390": "s390x",
    "riscv": "riscv64",
}


@dataclass(frozen=True)
class ArchInfo:
    name: str
    aliases: tuple[str, ...]
    syscall_nr: int                 # __NR_kexec_file_load
    formats: tuple[str, ...]        # kernel image formats the loader hands over (see loader)
    kernel_names: tuple[str, ...]   # file name patterns under /boot, "{kver}" substituted
    high_low: bool                  # ,high / ,low parsed (generic crashkernel reservation)
    default_low: int                # bytes reserved low when only ,high is given
    cma: bool                       # ,cma parsed
    align: int                      # CRASH_ALIGN, bytes
    low_max: int                    # CRASH_ADDR_LOW_MAX, bytes (0: no low/high split)
    default_table: str              # our default crashkernel= value (range syntax)
    cmdline_remove: tuple[str, ...]
    cmdline_append: tuple[str, ...]
    kernel_fallback: int            # runtime size assumed when no kernel file is known
    page_size: int
    percpu: int                     # bytes per capture-kernel CPU
    kernel_dynamic: int             # bytes the capture kernel allocates beyond its image


def normalise(name: str) -> str:
    """'amd64' -> 'x86_64', 'arm64' -> 'aarch64' ...; unknown names are returned as given."""
    n = name.strip().lower()
    return _ALIASES.get(n, n)


def host_arch() -> str:
    return normalise(platform.machine())


def _size(table: dict[str, Any], key: str) -> int:
    return parse_size(str(table[key]))


@cache
def load_arch(name: str) -> ArchInfo:
    arch = normalise(name)
    if arch not in ARCHES:
        raise UsageError(
            f"unknown architecture {name!r}; choose one of {', '.join(ARCHES)}"
        )
    path = data_dir("arch") / f"{arch}.toml"
    with path.open("rb") as f:
        d = tomllib.load(f)
    k, c, cl, e = d["kexec"], d["crashkernel"], d["cmdline"], d["estimate"]
    return ArchInfo(
        name=d["name"],
        aliases=tuple(d.get("aliases", ())),
        syscall_nr=int(k["syscall_nr"]),
        formats=tuple(k["formats"]),
        kernel_names=tuple(k["kernel_names"]),
        high_low=bool(c["high_low"]),
        default_low=_size(c, "default_low"),
        cma=bool(c["cma"]),
        align=_size(c, "align"),
        low_max=_size(c, "low_max"),
        default_table=str(c["default_table"]),
        cmdline_remove=tuple(cl["remove"]),
        cmdline_append=tuple(cl["append"]),
        kernel_fallback=_size(e, "kernel_fallback"),
        page_size=int(e["page_size"]),
        percpu=int(e["percpu_kib"]) * 1024,
        kernel_dynamic=_size(e, "kernel_dynamic"),
    )
