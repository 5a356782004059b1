"""Disk images for the guests, and reading dump results back without mounting anything.

Making disks and reading ext4 are the product's (mkkdumprd/vmtest/scratch.py), unflattening
a raw disk too (vmcore_check.restore_flat); ext4's free ranges and blkdebug drives are the
tests' own.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mkkdumprd.vmtest import scratch, vmcore_check
from mkkdumprd.vmtest.scratch import DirEntry, debugfs, make_ext4, make_raw, sparse_file, tree

from .images import require_tool

__all__ = ["DirEntry", "blkdebug_drive", "debugfs", "ext4_dump", "ext4_find_dumps",
           "ext4_free_ranges", "ext4_ls", "make_ext4", "make_raw", "sparse_file", "tree",
           "unflatten_raw"]


def ext4_ls(image: Path, directory: str) -> list[DirEntry]:
    """`debugfs -R "ls -l DIR"` parsed into entries ('.' and '..' left out)."""
    entries = scratch.ext_ls(image, directory)
    if not entries and "File not found" in debugfs(image, f"ls -l {directory}"):
        raise AssertionError(f"{directory} not found in {image}")
    return entries


def ext4_dump(image: Path, src: str, dest: Path) -> Path:
    """Copy one file out of the ext4 image with `debugfs -R "dump SRC DEST"`."""
    return scratch.ext_dump(image, src, dest)


def ext4_find_dumps(image: Path, path: str = "/var/crash") -> list[str]:
    """The dump directories (`<ip>-<date>`) under `path`, oldest name first."""
    return sorted(e.name for e in ext4_ls(image, path) if e.is_dir)


def unflatten_raw(disk: Path, out: Path) -> Path:
    """Rebuild a vmcore from a makedumpfile -F stream at the start of a raw disk."""
    return vmcore_check.restore_flat(disk, out)


def ext4_free_ranges(image: Path) -> list[tuple[int, int]]:
    """The free extents of an ext4 image as (first byte, end byte), from dumpe2fs."""
    r = subprocess.run([require_tool("dumpe2fs"), str(image)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"dumpe2fs {image} failed: {r.stderr.strip()}")
    m = re.search(r"^Block size:\s+(\d+)", r.stdout, re.M)
    if m is None:
        raise AssertionError(f"dumpe2fs {image} shows no block size")
    bs = int(m.group(1))
    out = []
    for line in re.findall(r"^\s+Free blocks: (.+)$", r.stdout, re.M):
        for part in line.split(", "):
            first, _, last = part.partition("-")
            if first.strip().isdigit():
                out.append((int(first) * bs, (int(last or first) + 1) * bs))
    return out


def blkdebug_drive(image: Path, config: Path, errno: int, sectors: Sequence[int]) -> list[str]:
    """QEMU arguments for `image` as a virtio disk whose writes at `sectors` (512-byte
    units) fail with `errno` (blkdebug), reported to the guest (werror=report: QEMU would
    otherwise stop the VM on ENOSPC)."""
    config.write_text("".join(f'[inject-error]\nevent = "write_aio"\nerrno = "{errno}"\n'
                              f'sector = "{s}"\n\n' for s in sectors))
    return ["-drive", f"driver=raw,file.driver=blkdebug,file.config={config},"
            f"file.image.filename={image},if=virtio,werror=report,rerror=report"]
