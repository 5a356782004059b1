"""Pieces of a guest initramfs as ImageSpec entries, written with the product's writer.

busybox with its applets, a host binary with its shared libraries, the /init script.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import Entry, ImageSpec, data_entry, dir_entry, symlink_entry
from mkkdumprd.image.writer import write_image
from mkkdumprd.vmtest.tools import find_tool

BUSYBOX = Path("/bin/busybox")    # where /init's #!/bin/sh finds it
MOUNT_POINTS = ("/proc", "/sys", "/dev", "/tmp", "/mnt", "/run")


def write_initramfs(spec: ImageSpec, out: Path, compression: str = "zstd") -> Path:
    """Write `spec` as a newc cpio with the product's writer."""
    write_image(spec, out, compression=Compression[compression.upper()])
    return out


def host_binary(path: str | Path, reason: str) -> list[Entry]:
    """A host binary at the same path in the image, plus its shared-library closure."""
    return binary_entries([str(path)], Host(Path("/")), reason)


def busybox_entries(busybox: Path | None = None) -> Iterator[Entry]:
    """busybox (with its libraries if it is dynamic) and its applets as symlinks beside it.

    On a merged-/usr host /bin is a symlink to usr/bin, and the image gets the same link
    (binary_entries keeps the host's layout), so the applets go where /bin really points.
    """
    bb = busybox or (BUSYBOX if BUSYBOX.exists() else Path(find_tool("busybox")))
    yield from host_binary(bb, "shell and tools for the guest's /init")
    bindir = Host(Path("/")).resolve(str(bb.parent))
    applets = subprocess.run([str(bb), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != bb.name:
            yield symlink_entry(f"{bindir}/{a}", bb.name, "busybox applet")
    for d in MOUNT_POINTS:
        yield dir_entry(d, "mount point")


def init_entry(script: str) -> Entry:
    return data_entry("/init", script, "the guest's /init", mode=0o755)
