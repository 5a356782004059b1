"""Image compression: size against time for zstd levels and long windows (not a test).

    .venv/bin/python bench/compress_levels.py [--reps 3]

Builds the local-target capture image of bench/build.py's kernel uncompressed
(`--compress none`), then compresses those same cpio bytes at each zstd level (and with
a long window), as mkkdumprd's writer does (zstandard stream, all cores, checksum), and
also with gzip -6 and xz -6 for scale. Each setting is timed --reps times, interleaved, and
the minimum kept, since the machine is shared (the load average is printed). The window
column is what the capture kernel's decompressor must hold while unpacking (the frame's
window size), memory taken from the crashkernel= reservation.
"""

from __future__ import annotations

import argparse
import gzip
import io
import lzma
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.debian_kernel import debian_kernel  # noqa: E402

CONF = "ext4 /dev/vda\npath /var/crash\ncore_collector makedumpfile -l --message-level 7 -d 31\n"


def zstd(level: int, window_log: int = 0) -> Callable[[bytes], bytes]:
    """As mkkdumprd's writer: a stream (size unknown, so the level's own window), checksum."""
    def run(data: bytes) -> bytes:
        if window_log:
            params = zstandard.ZstdCompressionParameters.from_level(
                level, window_log=window_log, enable_ldm=True, write_checksum=True, threads=-1)
            cctx = zstandard.ZstdCompressor(compression_params=params)
        else:
            cctx = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
        sink = io.BytesIO()
        with cctx.stream_writer(sink, closefd=False) as w:
            w.write(data)
        return sink.getvalue()
    return run


def window(frame: bytes) -> str:
    try:
        return f"{zstandard.get_frame_parameters(frame).window_size >> 10} KiB"
    except zstandard.ZstdError:
        return "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    kernel = debian_kernel()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "kdump.conf"
        conf.write_text(CONF)
        img = Path(tmp) / "img"
        subprocess.run([sys.executable, "-m", "mkkdumprd", "build", "-c", str(conf), "--kver",
                        kernel.kver, "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
                        "--add-drivers", "virtio_pci,virtio_blk,ext4", "--compress", "none",
                        "--force", "-q", "-o", str(img)], cwd=ROOT, check=True)
        data = img.read_bytes()
    settings: dict[str, Callable[[bytes], bytes]] = {
        f"zstd -{lv}": zstd(lv) for lv in (1, 3, 6, 9, 12, 15, 19)}
    settings["zstd -3 --long=23"] = zstd(3, 23)
    settings["zstd -3 --long=27"] = zstd(3, 27)
    settings["zstd -9 --long=27"] = zstd(9, 27)
    settings["zstd -19 --long=27"] = zstd(19, 27)
    settings["gzip -6"] = lambda d: gzip.compress(d, 6, mtime=0)
    settings["xz -6"] = lambda d: lzma.compress(d, check=lzma.CHECK_CRC32)
    best: dict[str, float] = {k: float("inf") for k in settings}
    out: dict[str, bytes] = {}
    for _ in range(args.reps):
        for name, fn in settings.items():
            t0 = time.perf_counter()
            out[name] = fn(data)
            best[name] = min(best[name], time.perf_counter() - t0)
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"uncompressed cpio {len(data) / 1e6:.2f} MB (kernel {kernel.kver}, local target); "
          f"host load average {load} on a 2-core machine shared with other QEMU guests: "
          f"compare within the table; times are the minimum of {args.reps}\n")
    print("| setting | image | ratio | compress time | vs zstd -3 | decoder window |")
    print("|---|---|---|---|---|---|")
    ref = best["zstd -3"]
    for name in settings:
        print(f"| {name} | {len(out[name]) / 1e6:.2f} MB | {len(data) / len(out[name]):.2f} | "
              f"{best[name] * 1000:.0f} ms | {best[name] / ref:.1f}x | "
              f"{window(out[name]) if name.startswith('zstd') else '-'} |")


if __name__ == "__main__":
    main()
