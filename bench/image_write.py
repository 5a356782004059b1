"""Image writer throughput on ~30 MB of real kernel modules (not a test; prints figures).

    .venv/bin/python bench/image_write.py [--mb 30] [--xz]

Plain sources: the Debian test kernel's .ko files (tests/support/debian_kernel.py), written
with every compression. --xz also writes the same files stored .ko.xz on the "host" (as
trixie and Fedora ship them), decoded while writing, with the decode pool on and off.
"""

from __future__ import annotations

import argparse
import lzma
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mkkdumprd.image import writer
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import Codec, ImageSpec, file_entry
from tests.support.debian_kernel import debian_kernel


def pick_modules(limit: int) -> list[Path]:
    kmoddir = Path(debian_kernel().kmoddir)
    out: list[Path] = []
    total = 0
    for ko in sorted(kmoddir.rglob("*.ko")):
        if total + ko.stat().st_size > limit:
            continue
        out.append(ko)
        total += ko.stat().st_size
    return out


def timed(spec: ImageSpec, dest: Path, **kw: object) -> tuple[float, writer.ImageStats]:
    best = float("inf")
    stats = None
    for _ in range(3):
        t0 = time.perf_counter()
        stats = writer.write_image(spec, dest, **kw)  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - t0)
    assert stats is not None
    return best, stats


def report(label: str, secs: float, stats: writer.ImageStats) -> None:
    mb = stats.unpacked_size / 1e6
    print(f"{label:<28} {secs:6.2f} s  {mb / secs:7.1f} MB/s  "
          f"{stats.unpacked_size / 1e6:6.1f} MB -> {stats.compressed_size / 1e6:6.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=30)
    ap.add_argument("--xz", action="store_true")
    args = ap.parse_args()
    mods = pick_modules(args.mb * 1_000_000)
    spec = ImageSpec()
    for ko in mods:
        spec.add(file_entry(f"/lib/modules/k/{ko.name}", ko, "bench"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "img"
        for comp, level in ((Compression.ZSTD, None), (Compression.ZSTD, 9),
                            (Compression.ZSTD, 15), (Compression.GZIP, None),
                            (Compression.XZ, None), (Compression.NONE, None)):
            secs, stats = timed(spec, out, compression=comp, level=level)
            name = comp.value + (f" -{level}" if level else " (default)")
            report(f"{len(mods)} plain .ko, {name}", secs, stats)
        if not args.xz:
            return
        xzdir = Path(tmp) / "xz"
        xzdir.mkdir()
        packed = ImageSpec()

        def pack(ko: Path) -> Path:
            dest = xzdir / (ko.name + ".xz")
            dest.write_bytes(lzma.compress(ko.read_bytes(), check=lzma.CHECK_CRC32, preset=3))
            return dest

        with ThreadPoolExecutor() as pool:
            for ko, xz in zip(mods, pool.map(pack, mods), strict=True):
                packed.add(file_entry(f"/lib/modules/k/{ko.name}", xz, "bench", codec=Codec.XZ))
        for threads in (4, 2, 1):
            writer._DECODE_THREADS = threads
            secs, stats = timed(packed, out)
            report(f".ko.xz sources, {threads} decode thr", secs, stats)


if __name__ == "__main__":
    main()
