"""Assemble test initramfs images from the project's own ImageSpec and writer.

The shared pieces (busybox with its applets, a host binary with its shared libraries, the
/init entry, the writer) are the product's (mkkdumprd/vmtest/guest_files.py); kernel
modules in load order come from modprobe here, as a test oracle.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, file_entry
from mkkdumprd.vmtest import guest_files
from mkkdumprd.vmtest.guest_files import host_binary, init_entry, write_initramfs

BUSYBOX = guest_files.BUSYBOX

__all__ = ["BUSYBOX", "busybox_entries", "host_binary", "init_entry", "module_entries",
           "module_load_order", "require_tool", "write_initramfs"]


def busybox_entries() -> Iterator[Entry]:
    if not BUSYBOX.exists():
        raise AssertionError("/bin/busybox missing; run dev/setup (apt package busybox)")
    return guest_files.busybox_entries(BUSYBOX)


def module_load_order(kmoddir: Path, kver: str, names: Iterable[str]) -> list[Path]:
    """.ko files in insmod order, from modprobe --show-depends (a test oracle)."""
    root = kmoddir.parent.parent.parent
    order: list[Path] = []
    for name in names:
        out = subprocess.run(["modprobe", "-d", str(root), "-S", kver, "--show-depends", name],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                ko = Path(parts[1])
                if ko not in order:
                    order.append(ko)
    return order


def module_entries(kmoddir: Path, kver: str, names: Iterable[str]) -> tuple[list[Entry], str]:
    """Entries for the modules and a shell snippet that loads them in order."""
    entries: list[Entry] = []
    lines: list[str] = []
    # Where /lib really is, as binary_entries mirrors the host's /lib -> usr/lib link.
    libdir = Host(Path("/")).resolve("/lib")
    for ko in module_load_order(kmoddir, kver, names):
        rel = ko.relative_to(kmoddir)
        dest = f"{libdir}/modules/{kver}/{rel}"
        entries.append(file_entry(dest, ko, "kernel module for the test", mode=0o644))
        lines.append(f"insmod {dest} || echo 'insmod {rel} failed'")
    return entries, "\n".join(lines)


def require_tool(name: str) -> str:
    # mkfs.ext4, debugfs and kexec live in sbin, which a non-root PATH may lack.
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise AssertionError(f"{name} not found on PATH; run dev/setup")
    return path
