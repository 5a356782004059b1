"""Disk images for the guests, and reading dump results back without mounting anything."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .images import require_tool


def sparse_file(path: Path, size_mb: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    return path


def make_ext4(path: Path, uuid: str, size_mb: int = 512, content: Path | None = None,
              label: str | None = None) -> Path:
    """A sparse ext4 image with filesystem UUID `uuid`, populated from `content` if given."""
    sparse_file(path, size_mb)
    cmd = [require_tool("mkfs.ext4"), "-q", "-F", "-U", uuid]
    if label:
        cmd += ["-L", label]
    if content is not None:
        cmd += ["-d", str(content)]
    subprocess.run([*cmd, str(path)], check=True, capture_output=True)
    return path


def make_raw(path: Path, size_mb: int = 512) -> Path:
    """A zero-filled (sparse) raw disk."""
    return sparse_file(path, size_mb)


@dataclass(frozen=True)
class DirEntry:
    name: str
    mode: int
    size: int


def debugfs(image: Path, request: str) -> str:
    r = subprocess.run([require_tool("debugfs"), "-R", request, str(image)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"debugfs -R {request!r} {image} failed: {r.stderr.strip()}")
    return r.stdout


def ext4_ls(image: Path, directory: str) -> list[DirEntry]:
    """`debugfs -R "ls -l DIR"` parsed into entries ('.' and '..' left out)."""
    out = debugfs(image, f"ls -l {directory}")
    entries = []
    for line in out.splitlines():
        # "  12  100644 (1)      0      0   12345 26-Nov-2026 06:00 vmcore"
        m = re.match(r"\s*\d+\s+(\d+)\s+\(\d+\)\s+\d+\s+\d+\s+(\d+)\s+\S+\s+\S+\s+(.+)$", line)
        if m and m.group(3) not in (".", ".."):
            entries.append(DirEntry(m.group(3), int(m.group(1), 8), int(m.group(2))))
    if not entries and "File not found" in out:
        raise AssertionError(f"{directory} not found in {image}")
    return entries


def ext4_dump(image: Path, src: str, dest: Path) -> Path:
    """Copy one file out of the ext4 image with `debugfs -R "dump SRC DEST"`."""
    debugfs(image, f"dump {src} {dest}")
    if not dest.exists():
        raise AssertionError(f"debugfs could not dump {src} from {image}")
    return dest


def ext4_find_dumps(image: Path, path: str = "/var/crash") -> list[str]:
    """The dump directories (`<ip>-<date>`) under `path`, oldest name first."""
    return sorted(e.name for e in ext4_ls(image, path) if e.mode & 0o170000 == 0o040000)


def unflatten_raw(disk: Path, out: Path) -> Path:
    """Rebuild a vmcore from a makedumpfile -F stream at the start of a raw disk."""
    with open(disk, "rb") as src:
        r = subprocess.run([require_tool("makedumpfile"), "-R", str(out)], stdin=src,
                           capture_output=True, text=True)
    if r.returncode != 0 or not out.exists():
        raise AssertionError(f"makedumpfile -R from {disk} failed (rc {r.returncode}): "
                             f"{(r.stdout + r.stderr).strip()[-2000:]}")
    return out


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


def tree(root: Path, *dirs: str) -> Path:
    """A directory `root` with the given relative subdirectories, for `make_ext4(content=)`."""
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    return root
