"""What takes the space in a capture image: totals by kind and the largest files.

Read back from the written image (sizes as the kernel unpacks them) with the reasons from
its manifest, so it describes exactly what was built, also for an image built earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.human_size import human_size

_KINDS = (("kernel module", "kernel modules"), ("firmware", "firmware"),
          ("library", "libraries"), ("binary", "binaries"), ("busybox", "binaries"),
          ("host tool", "binaries"), ("template", "scripts"))


@dataclass(frozen=True)
class SizeLine:
    path: str
    size: int
    kind: str


def kind_of(reason: str) -> str:
    for prefix, kind in _KINDS:
        if reason.startswith(prefix):
            return kind
    return "other files"


def size_lines(image: Path) -> list[SizeLine]:
    """Regular files of the image, largest first."""
    from mkkdumprd.assemble.freshness import read_manifest
    from mkkdumprd.image.reader import read_members

    manifest = read_manifest(image) or {}
    entries = manifest.get("entries")
    reasons: Mapping[str, str] = entries if isinstance(entries, dict) else {}
    files = [m for m in read_members(image) if m.kind == "file"]
    out = [SizeLine(m.path, m.size, kind_of(str(reasons.get(m.path, "")))) for m in files]
    return sorted(out, key=lambda s: (-s.size, s.path))


def report(image: Path, top: int = 12) -> list[str]:
    """Printable lines: share of each kind, then the `top` largest files."""
    lines = size_lines(image)
    total = sum(s.size for s in lines) or 1
    by_kind: dict[str, tuple[int, int]] = {}
    for s in lines:
        size, n = by_kind.get(s.kind, (0, 0))
        by_kind[s.kind] = (size + s.size, n + 1)
    out = [f"unpacked size by kind ({_kib(total)} in {len(lines)} files):"]
    for kind, (size, n) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        out.append(f"  {_kib(size):>10}  {100 * size / total:5.1f}%  {n:4d}  {kind}")
    out.append(f"largest {min(top, len(lines))} files:")
    for s in lines[:top]:
        out.append(f"  {_kib(s.size):>10}  {100 * s.size / total:5.1f}%  {s.path}")
    return out


def _kib(n: int) -> str:
    return human_size(n, "KiB")  # one unit: the columns line up
