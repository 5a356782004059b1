"""A stand-in for kexec_file_load: records every call and plays the kernel's sysfs.

SAFETY: tests hand this to the loader instead of the real syscall, which refuses to run
under pytest anyway (tests/unit/test_loader_load.py checks that).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mkkdumprd.host import Host
from mkkdumprd.loader import kexec, live


@dataclass
class Call:
    nr: int
    kernel: bytes | None          # the first bytes read through the kernel fd
    kernel_size: int | None
    initrd: bytes | None
    cmdline_len: int
    cmdline: bytes | None
    flags: int


@dataclass
class FakeKexec:
    """Stands in for kexec_file_load: records what it got and plays the kernel's sysfs."""

    root: Path
    fail: int | None = None
    calls: list[Call] = field(default_factory=list)

    def __call__(self, nr: int, kfd: int, ifd: int, length: int, cmdline: bytes | None,
                 flags: int) -> None:
        def peek(fd: int) -> tuple[bytes | None, int | None]:
            if fd < 0:
                return None, None
            return os.pread(fd, 64, 0), os.fstat(fd).st_size
        kb, ksize = peek(kfd)
        ib, _ = peek(ifd)
        self.calls.append(Call(nr, kb, ksize, ib, length, cmdline, flags))
        if self.fail is not None:
            raise OSError(self.fail, os.strerror(self.fail))
        loaded = "0" if flags & kexec.KEXEC_FILE_UNLOAD else "1"
        (self.root / "sys/kernel/kexec_crash_loaded").write_text(loaded + "\n")

    @property
    def kernel(self) -> live.Kernel:
        """This fake as the kernel of the system in `root` (no kexec-tools)."""
        return live.Kernel(self.root, self, _no_kexec_tools)


def _no_kexec_tools(host: Host, argv: object, kallsyms: object) -> tuple[int, str]:
    raise AssertionError(f"kexec-tools reached: {argv}")
