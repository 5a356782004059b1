"""Scratch disks for the guest, and reading what the capture kernel wrote back from them.

A local target is stood in for by a sparse file holding a fresh filesystem of the same type
with the same UUID and label as the real one, so the image's own lookup (findfs UUID=...)
is exercised — the real disk is never touched. A raw target gets a zero-filled file.
Nothing is mounted: ext2/3/4 are read with debugfs (a raw disk is read back by savecore,
targets.py).
Other filesystems and block stacks are made by the guest itself on the blank disks made
here (stack_script.py) and read back by a second boot (readback.py): this machine never
runs mkfs on anything but a regular file, nor lvm/mdadm/cryptsetup, nor mounts.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.vmtest.tools import find_tool

# Filesystems whose scratch copy can be made and read back without mounting.
READABLE_FS = ("ext2", "ext3", "ext4")


def sparse_file(path: Path, size_mb: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    return path


def make_fs(path: Path, fstype: str, uuid: str, size_mb: int = 512,
            content: Path | None = None, label: str | None = None) -> Path:
    """A sparse image holding a fresh `fstype` with filesystem UUID `uuid` (and `label`),
    populated from the directory `content` if given."""
    if fstype not in READABLE_FS:
        raise UsageError(f"a scratch {fstype} disk is not made here (mkfs on a file, read "
                         f"by debugfs: {', '.join(READABLE_FS)}); the guest makes it "
                         "(local_target.py)")
    sparse_file(path, size_mb)
    cmd = [find_tool(f"mkfs.{fstype}"), "-q", "-F", "-U", uuid]
    if label:
        cmd += ["-L", label]
    if content is not None:
        cmd += ["-d", str(content)]
    r = subprocess.run([*cmd, str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationError(f"mkfs.{fstype} {path} failed: {r.stderr.strip()}")
    return path


def make_ext4(path: Path, uuid: str, size_mb: int = 512, content: Path | None = None,
              label: str | None = None) -> Path:
    return make_fs(path, "ext4", uuid, size_mb, content, label)


SECTOR = 512


def make_partitioned(path: Path, number: int, size_mb: int = 512) -> Path:
    """A sparse disk with an MBR whose partition `number` (1-4) holds the rest of the disk
    after 1 MiB fillers for the partitions before it, so the guest's kernel names it as the
    host names the target's partition (vdb2: partition 2 of the second disk)."""
    if not 1 <= number <= 4:
        raise ValueError(f"MBR partition {number}")
    sparse_file(path, size_mb)
    mib = (1 << 20) // SECTOR
    table = bytearray(64)
    for i in range(number):
        start = mib * (1 + i)
        count = mib if i < number - 1 else (size_mb << 20) // SECTOR - start
        table[16 * i:16 * i + 16] = (bytes([0, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF])
                                     + start.to_bytes(4, "little")
                                     + count.to_bytes(4, "little"))
    with open(path, "r+b") as f:
        f.seek(446)
        f.write(bytes(table) + b"\x55\xaa")
    return path


def make_raw(path: Path, size_mb: int = 512) -> Path:
    """A zero-filled (sparse) raw disk."""
    return sparse_file(path, size_mb)


def tree(root: Path, *dirs: str) -> Path:
    """A directory `root` with the given relative subdirectories, for `make_fs(content=)`."""
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class DirEntry:
    name: str
    mode: int
    size: int

    @property
    def is_dir(self) -> bool:
        return self.mode & 0o170000 == 0o040000


def debugfs(image: Path, request: str) -> str:
    r = subprocess.run([find_tool("debugfs"), "-R", request, str(image)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationError(f"debugfs -R {request!r} {image} failed: {r.stderr.strip()}")
    return r.stdout


def ext_ls(image: Path, directory: str) -> list[DirEntry]:
    """`debugfs -R "ls -l DIR"` parsed into entries ('.' and '..' left out); a missing
    directory is an empty list."""
    out = debugfs(image, f"ls -l {directory}")
    entries = []
    for line in out.splitlines():
        # "  12  100644 (1)      0      0   12345 26-Nov-2026 06:00 vmcore"
        m = re.match(r"\s*\d+\s+(\d+)\s+\(\d+\)\s+\d+\s+\d+\s+(\d+)\s+\S+\s+\S+\s+(.+)$", line)
        if m and m.group(3) not in (".", ".."):
            entries.append(DirEntry(m.group(3), int(m.group(1), 8), int(m.group(2))))
    return entries


def ext_dump(image: Path, src: str, dest: Path) -> Path:
    """Copy one file out of the image with `debugfs -R "dump SRC DEST"`."""
    debugfs(image, f"dump {src} {dest}")
    if not dest.exists():
        raise OperationError(f"debugfs could not copy {src} out of {image}")
    return dest
