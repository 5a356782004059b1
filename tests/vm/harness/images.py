"""Assemble test initramfs images from the project's own ImageSpec and writer.

The helpers here build the pieces the harness's own images share (busybox with its applets,
a host binary with its shared libraries, kernel modules in load order) as ImageSpec entries.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import (
    Entry,
    ImageSpec,
    data_entry,
    dir_entry,
    file_entry,
    symlink_entry,
)
from mkkdumprd.image.writer import write_image

BUSYBOX = Path("/bin/busybox")


def write_initramfs(spec: ImageSpec, out: Path, compression: str = "zstd") -> Path:
    """Write `spec` as a newc cpio with the product's writer."""
    write_image(spec, out, compression=Compression[compression.upper()])
    return out


def host_binary(path: str | Path, reason: str) -> list[Entry]:
    """A host binary at the same path in the image, plus its shared-library closure."""
    return binary_entries([str(path)], Host(Path("/")), reason)


def busybox_entries() -> Iterator[Entry]:
    """busybox (with its libraries if it is dynamic) and its applets as symlinks beside it.

    On a merged-/usr host /bin is a symlink to usr/bin, and the image gets the same link
    (binary_entries keeps the host's layout), so the applets go where /bin really points.
    """
    if not BUSYBOX.exists():
        raise AssertionError("/bin/busybox missing; run dev/setup (apt package busybox)")
    yield from host_binary(BUSYBOX, "shell and tools for the test /init")
    bindir = Host(Path("/")).resolve(str(BUSYBOX.parent))
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            yield symlink_entry(f"{bindir}/{a}", "busybox", "busybox applet")
    for d in ("/proc", "/sys", "/dev", "/tmp", "/mnt", "/run"):
        yield dir_entry(d, "mount point")


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


def init_entry(script: str) -> Entry:
    return data_entry("/init", script, "test /init", mode=0o755)


def require_tool(name: str) -> str:
    # mkfs.ext4, debugfs and kexec live in sbin, which a non-root PATH may lack.
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise AssertionError(f"{name} not found on PATH; run dev/setup")
    return path
