"""Per-architecture facts, read from mkkdumprd/data/arch/<name>.toml (one file per arch).

The loader imports this module, so it stays standard-library only (tomllib). tomllib and the
data folder are imported when an arch file is read: `host_arch()` alone is on the path of
an up-to-date `mkkdumprd build`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mkkdumprd.errors import ShippedDataError, UsageError

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
    """One architecture's facts (data/arch/<arch>.toml): loader, image names, reservation."""

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
    # loader/capture_cpus.py: the most CPUs the capture kernel may bring up (1: nr_cpus=1
    # stays), and whether the boot CPU is kept out of it then (x86 disable_cpu_apicid=).
    max_cpus: int = 1
    disable_boot_cpu: bool = False


def normalise(name: str) -> str:
    """'amd64' -> 'x86_64', 'arm64' -> 'aarch64' ...; unknown names are returned as given."""
    n = name.strip().lower()
    return _ALIASES.get(n, n)


def host_arch() -> str:
    return normalise(os.uname().machine)  # what platform.machine() returns on Linux


class _Toml:
    """Typed reads from one arch file; a missing or mistyped key is a ShippedDataError
    naming the file and the key (a broken installation, not the user's input)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def get(self, key: str) -> Any:
        value: Any = self.data
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ShippedDataError(f"{self.path}: missing key {key}")
            value = value[part]
        return value

    def typed(self, key: str, kind: type[Any]) -> Any:
        value = self.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ShippedDataError(
                f"{self.path}: {key}: expected {kind.__name__}, got {value!r}")
        return value

    def words(self, key: str) -> tuple[str, ...]:
        value = self.typed(key, list)
        if not all(isinstance(v, str) for v in value):
            raise ShippedDataError(f"{self.path}: {key}: expected a list of strings")
        return tuple(value)

    def size(self, key: str) -> int:
        from mkkdumprd.crashkernel.size import parse_size

        value = self.get(key)
        try:
            return parse_size(str(value))
        except ValueError as exc:
            raise ShippedDataError(f"{self.path}: {key}: {exc}") from None


@cache
def load_arch(name: str) -> ArchInfo:
    import tomllib

    from mkkdumprd.resources import data_dir

    arch = normalise(name)
    if arch not in ARCHES:
        raise UsageError(
            f"unknown architecture {name!r}; choose one of {', '.join(ARCHES)}"
        )
    path = data_dir("arch") / f"{arch}.toml"
    try:
        with path.open("rb") as f:
            t = _Toml(path, tomllib.load(f))
    except OSError as exc:
        raise ShippedDataError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ShippedDataError(f"{path}: invalid TOML: {exc}") from None
    return ArchInfo(
        name=t.typed("name", str),
        aliases=t.words("aliases") if "aliases" in t.data else (),
        syscall_nr=t.typed("kexec.syscall_nr", int),
        formats=t.words("kexec.formats"),
        kernel_names=t.words("kexec.kernel_names"),
        high_low=t.typed("crashkernel.high_low", bool),
        default_low=t.size("crashkernel.default_low"),
        cma=t.typed("crashkernel.cma", bool),
        align=t.size("crashkernel.align"),
        low_max=t.size("crashkernel.low_max"),
        default_table=t.typed("crashkernel.default_table", str),
        cmdline_remove=t.words("cmdline.remove"),
        cmdline_append=t.words("cmdline.append"),
        kernel_fallback=t.size("estimate.kernel_fallback"),
        page_size=t.typed("estimate.page_size", int),
        percpu=t.typed("estimate.percpu_kib", int) * 1024,
        kernel_dynamic=t.size("estimate.kernel_dynamic"),
        max_cpus=t.typed("cmdline.max_cpus", int),
        disable_boot_cpu=t.typed("cmdline.disable_boot_cpu", bool),
    )
