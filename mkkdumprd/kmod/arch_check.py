"""Kernel modules built for another architecture are refused at build time.

A capture image for --arch A built against the modules of another kernel (a --kmoddir of
the host in a cross build) would only fail in the capture kernel, after a crash, with
"Exec format error" from insmod. The ELF header tells us now; compressed modules are
decoded just far enough to read it.
"""

from __future__ import annotations

import gzip
import lzma
from collections.abc import Iterable
from pathlib import Path

from mkkdumprd.elf.closure import parse_machine
from mkkdumprd.elf.objects import NotElf, ident_of
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Codec
from mkkdumprd.kmod.closure import KModule


def module_head(host: Host, path: Path, codec: Codec, size: int = 20) -> bytes:
    """The first `size` bytes of the module as the kernel sees it (decompressed)."""
    with host.open(path) as raw:
        if codec is Codec.GZIP:
            with gzip.open(raw, "rb") as f:
                return f.read(size)
        if codec is Codec.XZ:
            with lzma.open(raw, "rb") as f:
                return f.read(size)
        if codec is Codec.ZSTD:
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(raw) as f:
                try:
                    return f.read(size)
                except zstandard.ZstdError as exc:
                    raise OSError(f"zstd: {exc}") from None
        return raw.read(size)


def check_modules_arch(host: Host, modules: Iterable[KModule], arch: str) -> None:
    """Raise UsageError naming the first module not built for `arch` (its path in `host`)."""
    want_machine, want_class = parse_machine(arch)
    for m in modules:
        try:
            ident = ident_of(module_head(host, m.path, m.codec), str(m.path))
        except (NotElf, OSError, EOFError, lzma.LZMAError) as exc:
            raise UsageError(f"kernel module {m.path} is not a readable ELF object ({exc}); "
                             "reinstall the kernel package it comes from") from None
        if (ident.machine, ident.elf_class) != (want_machine, want_class):
            raise UsageError(
                f"kernel module {m.path} is a {ident.elf_class}-bit {ident.machine} object, not "
                f"{want_class}-bit {want_machine} for --arch {arch}; give the modules "
                f"of the {arch} kernel (--sysroot of that architecture or --kmoddir)")
