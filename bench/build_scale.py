"""How build time and image size grow with kernel modules and with dump targets (not a test).

    .venv/bin/python bench/build_scale.py [--reps 3] [--json FILE]

Same kernel tree as bench/build.py (the Debian kernel of tests/support/debian_kernel.py),
--no-hostonly, a warm build cache, `--force` (so each figure is the build's own work, not
the one-time index load of a cold cache); median of --reps process runs each.

- Modules: 10, 100 and 1000 module names spread evenly over the kernel's sorted module list
  (`--add-drivers`), on top of the local ext4 target's virtio_pci, virtio_blk, ext4; the
  x axis is the modules the image really holds (their dependencies come along).
- Targets, `dump_policy fallback`, the same drivers for all: 1, 2 and 3 nfs targets (one
  kind, so the slope is the cost of one more target), and ext4 /dev/vda, + nfs
  10.0.2.2:/export, + ssh root@10.0.2.2 (three kinds: each step adds that kind's tools; a
  throwaway key and a private HOME whose known_hosts holds it, so nothing is dialled at
  build time).

For each series a least-squares line is fitted: the slope is the cost per module or per
target. "Linear" means the slope of the last step is at most 1.5x that of the first one
(worse than linear would show as a growing slope). The machine is shared: the load average
is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mkkdumprd.assemble.freshness import read_manifest  # noqa: E402
from tests.support.debian_kernel import Kernel, debian_kernel  # noqa: E402

COLLECTOR = "core_collector makedumpfile -F -l --message-level 7 -d 31\n"
BASE = ("virtio_pci", "virtio_blk", "ext4")
TARGET_LINES = ("ext4 /dev/vda", "nfs 10.0.2.2:/export", "ssh root@10.0.2.2")
NFS_LINES = ("nfs 10.0.2.2:/export", "nfs 10.0.2.3:/export", "nfs 10.0.2.4:/export")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def module_names(kernel: Kernel) -> list[str]:
    names = set()
    for line in (kernel.kmoddir / "modules.dep").read_text().splitlines():
        head = line.split(":", 1)[0].rsplit("/", 1)[-1]
        names.add(re.sub(r"\.ko(\.[a-z]+)?$", "", head).replace("-", "_"))
    return sorted(names)


def spread(names: list[str], n: int) -> list[str]:
    step = len(names) / n
    return [names[int(i * step)] for i in range(n)]


def fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """(intercept, slope, r²) of the least-squares line."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    icpt = my - slope * mx
    ss_res = sum((y - icpt - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1.0
    return icpt, slope, 1 - ss_res / ss_tot


def linear_verdict(xs: list[float], ys: list[float]) -> str:
    first = (ys[1] - ys[0]) / (xs[1] - xs[0])
    last = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    if first <= 0:
        return "no growth measured in the first step (within the noise)"
    ratio = last / first
    return (f"linear (last step's slope {ratio:.2f}x the first's)" if ratio <= 1.5
            else f"WORSE than linear (last step's slope {ratio:.2f}x the first's)")


def build(cmd: list[str], env: dict[str, str], image: Path, reps: int) -> dict[str, float]:
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if p.returncode != 0:
            raise RuntimeError(f"build failed ({p.returncode}): {p.stderr[-2000:]}")
    manifest = read_manifest(image) or {}
    return {"wall": statistics.median(walls), "compressed": image.stat().st_size,
            "modules": len(manifest.get("kernel_modules") or []),
            "unpacked": unpacked(image)}


def unpacked(image: Path) -> int:
    """Bytes of regular files (a hard-linked file once), read back with our reader."""
    from mkkdumprd.image.reader import _open, _walk

    total = 0
    links: dict[object, int] = {}
    with _open(image) as f:
        for member, _body, link in _walk(f, image):
            if member.kind == "file":
                if link is None:
                    total += member.size
                else:
                    links[link] = max(links.get(link, 0), member.size)
    return total + sum(links.values())


def series_print(title: str, unit: str, xs: list[float], rows: list[dict[str, float]]) -> dict[
        str, object]:
    walls = [r["wall"] for r in rows]
    sizes = [r["compressed"] / 1024 for r in rows]
    t_icpt, t_slope, t_r2 = fit(xs, walls)
    s_icpt, s_slope, s_r2 = fit(xs, sizes)
    print(f"\n{title}")
    print(f"  {unit:>9} {'build s':>9} {'image':>10} {'unpacked':>10}")
    for x, r in zip(xs, rows, strict=True):
        print(f"  {x:9.0f} {r['wall']:9.3f} {r['compressed'] / 1048576:8.2f}Mi "
              f"{r['unpacked'] / 1048576:8.2f}Mi")
    print(f"  time: {t_icpt:.3f} s + {t_slope * 1000:.2f} ms per {unit.rstrip('s')} "
          f"(r² {t_r2:.3f}); {linear_verdict(xs, walls)}")
    print(f"  size: {s_icpt / 1024:.2f} MiB + {s_slope:.1f} KiB per {unit.rstrip('s')} "
          f"(r² {s_r2:.3f}); {linear_verdict(xs, sizes)}")
    return {"x": xs, "rows": rows, "time_intercept_s": t_icpt, "time_per_unit_s": t_slope,
            "time_r2": t_r2, "size_intercept_kib": s_icpt, "size_per_unit_kib": s_slope,
            "size_r2": s_r2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    kernel = debian_kernel()
    print(f"kernel {kernel.kver}; {os.cpu_count()} CPUs; load average {loadavg()} before")
    out: dict[str, object] = {"kernel": kernel.kver}
    with tempfile.TemporaryDirectory(prefix="mkkdumprd-scale-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, PYTHONPYCACHEPREFIX=str(work / "pyc"),
                   MKKDUMPRD_CACHE_DIR=str(work / "cache"), HOME=str(work / "home"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        key = work / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        (work / "home/.ssh").mkdir(parents=True)
        pub = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        (work / "home/.ssh/known_hosts").write_text(f"10.0.2.2 {pub}\n")

        def cmd(conf: Path, drivers: list[str], image: Path) -> list[str]:
            return [sys.executable, "-m", "mkkdumprd", "build", "-c", str(conf),
                    "--no-hostonly", "--kver", kernel.kver, "--kmoddir", str(kernel.kmoddir),
                    "--add-drivers", ",".join(drivers), "-o", str(image), "-q", "--force"]

        names = module_names(kernel)
        local = work / "local.conf"
        local.write_text("ext4 /dev/vda\npath /var/crash\n" + COLLECTOR.replace("-F ", ""))
        rows = []
        for n in (0, 10, 100, 1000):
            image = work / f"mods-{n}.img"
            c = cmd(local, [*BASE, *spread(names, n)] if n else list(BASE), image)
            subprocess.run(c, env=env, capture_output=True)  # warm the cache for this set
            rows.append(build(c, env, image, args.reps))
            print(f"  {n} extra modules: done; load average {loadavg()}", flush=True)
        xs = [float(r["modules"]) for r in rows]
        out["modules"] = series_print(
            "kernel modules in the image (10, 100, 1000 names asked on top of the base 3)",
            "modules", xs, rows)
        for name, lines in (("nfs", NFS_LINES), ("mixed", TARGET_LINES)):
            rows = []
            for k in (1, 2, 3):
                conf = work / f"targets-{name}-{k}.conf"
                conf.write_text("dump_policy fallback\n" + "".join(
                    f"{t}\n" for t in lines[:k]) + "path /var/crash\n" + COLLECTOR +
                    f"sshkey {key}\n")
                image = work / f"targets-{name}-{k}.img"
                c = cmd(conf, [*BASE, "virtio_net"], image)
                subprocess.run(c, env=env, capture_output=True)
                rows.append(build(c, env, image, args.reps))
                print(f"  {name}: {k} targets done; load average {loadavg()}", flush=True)
            if name == "nfs":
                out["targets_same_kind"] = series_print(
                    "dump targets of one kind (1, 2, 3 nfs servers; dump_policy fallback)",
                    "targets", [1.0, 2.0, 3.0], rows)
                continue
            print("\ndump targets of three kinds (ext4, + nfs, + ssh; dump_policy fallback): "
                  "each step adds that kind's tools")
            prev: dict[str, float] | None = None
            for line, r in zip(lines, rows, strict=True):
                step = "" if prev is None else (
                    f"  (+{(r['wall'] - prev['wall']) * 1000:.0f} ms, "
                    f"+{(r['compressed'] - prev['compressed']) / 1048576:.2f} MiB, "
                    f"+{(r['unpacked'] - prev['unpacked']) / 1048576:.2f} MiB unpacked)")
                print(f"  + {line:<22} {r['wall']:7.3f} s {r['compressed'] / 1048576:7.2f}Mi"
                      f"{step}")
                prev = r
            out["targets_mixed"] = rows
    print(f"\nload average {loadavg()} after; median of {args.reps} runs each; a shared "
          "2-core machine: compare within a series")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
