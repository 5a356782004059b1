"""The image against a hand-made one of the same files (for bench/build.py).

The hand-made image is what a person would pack by hand from the same file list: the
image is unpacked with GNU cpio (the oracle; device nodes are left out, not created on
this machine), packed again with `cpio -o -H newc --reproducible -R 0:0` in bytewise
path order, and compressed by the zstd command with the level mkkdumprd used (3 unless
--compress said otherwise) and all cores. Printed side by side: the content (the
uncompressed cpio, what compression works on), the compressed file, and the unpacked size
(regular files, a hard-linked file once): what the capture kernel holds in its
reservation while it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from mkkdumprd.image.compression import Detected, detect


def _unpacked(root: Path) -> tuple[int, int]:
    seen: set[tuple[int, int]] = set()
    total = files = 0
    for d, _dirs, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(d, n))
            if not os.path.isfile(os.path.join(d, n)) or os.path.islink(os.path.join(d, n)):
                continue
            files += 1
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total, files


def _zstd(data: bytes, *flags: str) -> int:
    p = subprocess.run(["zstd", "-q", "-c", "-T0", *flags], input=data, capture_output=True,
                       check=True)
    return len(p.stdout)


def report(image: Path, work: Path, level: int = 3) -> dict[str, object]:
    """Prints and returns the comparison for one of our zstd images."""
    missing = [t for t in ("cpio", "zstd") if shutil.which(t) is None]
    if missing:
        print(f"hand-made image skipped: {', '.join(missing)} not installed")
        return {}
    with open(image, "rb") as f:
        fmt = detect(f.read(64))
    if fmt is not Detected.ZSTD:
        print(f"hand-made image skipped: {image.name} is not a zstd image")
        return {}
    ours = subprocess.run(["zstd", "-q", "-dc", str(image)], capture_output=True,
                          check=True).stdout
    tree = work / "tree"
    tree.mkdir(parents=True)
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames", "-f", "dev/*"],
                   input=ours, cwd=tree, check=True, capture_output=True)
    listing = subprocess.run(["cpio", "-tv", "--quiet"], input=ours, capture_output=True,
                             check=True).stdout.decode(errors="replace").splitlines()
    devices = sum(1 for line in listing if line[:1] in ("c", "b"))
    names = sorted((str(p.relative_to(tree)) for p in tree.rglob("*")),
                   key=lambda n: n.encode("utf-8", "surrogateescape"))
    hand = subprocess.run(["cpio", "-o", "-H", "newc", "--reproducible", "-R", "0:0",
                           "--quiet"], input="\n".join(names).encode() + b"\n", cwd=tree,
                          capture_output=True, check=True).stdout
    unpacked, files = _unpacked(tree)
    row = {
        "image": image.name, "level": level, "entries_ours": len(listing),
        "entries_hand": len(names), "device_nodes_left_out": devices,
        "content_ours": len(ours), "content_hand": len(hand),
        "compressed_ours": image.stat().st_size,
        "compressed_ours_cli": _zstd(ours, f"-{level}"),
        "compressed_hand": _zstd(hand, f"-{level}"),
        "compressed_ours_19": _zstd(ours, "-19"),
        "compressed_hand_19": _zstd(hand, "-19"),
        "unpacked": unpacked, "files": files,
    }
    mb = 1e6
    print(f"\nimage {image.name} against a hand-made image of the same {len(names)} entries "
          f"(GNU cpio -H newc; {devices} device nodes left out of the hand-made one, "
          f"~120 B each):")
    print(f"  {'':<34} {'ours':>10} {'hand-made':>10} {'ours/hand':>9}")
    for label, a, b in (
        ("content (uncompressed cpio)", row["content_ours"], row["content_hand"]),
        (f"zstd -{level} -T0 (zstd command)", row["compressed_ours_cli"],
         row["compressed_hand"]),
        ("zstd -19 -T0 (zstd command)", row["compressed_ours_19"], row["compressed_hand_19"]),
    ):
        assert isinstance(a, int) and isinstance(b, int)
        print(f"  {label:<34} {a / mb:9.2f}M {b / mb:9.2f}M {a / b:9.3f}")
    built = image.stat().st_size
    print(f"  {'our file as built (zstd stream)':<34} {built / mb:9.2f}M")
    print(f"  {'unpacked (regular files)':<34} {unpacked / mb:9.2f}M  ({files} files)")
    return row
