"""Capture-image builds side by side: mkkdumprd, dracut and mkinitramfs (not a test).

    .venv/bin/python bench/build.py [--reps 5] [--targets local,nfs] [--json FILE]
                                    [--no-profile] [--no-handmade]

It prints, from one run: where a build's time goes (imports by package, with the ones a
build should not need, and the top functions of a cProfile of one cold and one up-to-date
build in-process; then the cold build by step without a profiler, build_parts/steps.py:
Python's start-up, the imports alone, each step of the build, the interpreter's exit),
the timing table, the goals of issue #24 (cold <= 0.25 s, up to date
<= 0.08 s, >= 20x faster than dracut) as PASS/FAIL with the figures and the Python start-up
floor measured in the same run, and the image against a hand-made one (GNU cpio -H newc of
the same files, the same compressor and level).

Same kernel tree (the Debian kernel of tests/support/debian_kernel.py), same target, same
kernel modules and dump tools, built --no-hostonly:

- local: ext4 on /dev/vda (virtio-blk); nfs: 10.0.2.2:/export over virtio-net.
- mkkdumprd: `mkkdumprd build --no-hostonly --add-drivers ...` in three situations:
  cold (an empty build cache, a rebuild forced), rebuild (warm cache, --force), and
  up-to-date (warm cache, nothing changed: the check that `mkkdumprd build` runs first).
- dracut (Debian's dracut-core): `--no-hostonly --kver --kmoddir -m "base busybox"
  --add-drivers <the kernel modules mkkdumprd put in> --install "makedumpfile
  vmcore-dmesg" --zstd`, with an empty configuration. "base busybox" is the smallest
  module set dracut builds (base pulls udev-rules); dracut has no kdump module on Debian.
- mkinitramfs (initramfs-tools-core): MODULES=list with the same modules, BUSYBOX=y,
  COMPRESS=zstd, a hook adding makedumpfile and vmcore-dmesg. It only reads
  /lib/modules/KVER, so it runs in a private mount namespace where that path shows the
  test tree (an overlay on /usr/lib), from a copy that reads the test kernel's config
  instead of /boot/config-KVER; the host is not changed.

Runs alternate between tools and repeat, each after a sync (the writeback of the run before
is not charged to the next); each run happens in a fresh runner process that
reports its children's wall time and peak RSS (getrusage(RUSAGE_CHILDREN).ru_maxrss: the
largest process of the tree). Sizes come from reading each image back with mkkdumprd's
reader: compressed = the file, unpacked = the bytes of regular files (a hard-linked file
once), files = regular file names.
The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.build_parts import handmade, profile, steps  # noqa: E402
from mkkdumprd.assemble.freshness import read_manifest  # noqa: E402
from tests.support.debian_kernel import Kernel, debian_kernel  # noqa: E402

TARGETS = {
    "local": ("ext4 /dev/vda\npath /var/crash\n", ("virtio_pci", "virtio_blk", "ext4")),
    "nfs": ("nfs 10.0.2.2:/export\npath /var/crash\n", ("virtio_pci", "virtio_net")),
}
COLLECTOR = "core_collector makedumpfile -l --message-level 7 -d 31\n"
TOOLS = ("makedumpfile", "vmcore-dmesg")

# Runs one command, reports its wall time and the peak RSS of its process tree.
RUNNER = textwrap.dedent("""\
    import json, resource, subprocess, sys, time
    cmd = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rc": p.returncode, "wall": wall, "maxrss_kb": ru.ru_maxrss,
                      "cpu": ru.ru_utime + ru.ru_stime,
                      "err": p.stderr.decode(errors="replace")[-2000:]}))
""")


@dataclass
class Row:
    target: str
    tool: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    compressed: int = 0
    unpacked: int = 0
    files: int = 0
    note: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")


@dataclass
class Case:
    """One way of building one target: how to run it, where the image lands."""

    row: Row
    cmd: list[str]
    env: dict[str, str]
    image: Path
    prepare: list[list[str]] = field(default_factory=list)  # run before each timed run
    prepare_env: dict[str, str] | None = None  # the environment of those, if not ours


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cmd)], env=env,
                         capture_output=True, text=True, check=True)
    res: dict[str, object] = json.loads(out.stdout)
    if res["rc"] != 0:
        raise RuntimeError(f"{cmd[0]} failed ({res['rc']}): {res['err']}")
    return res


def image_sizes(row: Row, image: Path) -> None:
    """Hard links (mkinitramfs links busybox applets) hold their data once."""
    from mkkdumprd.image.reader import _open, _walk

    files = 0
    unpacked = 0
    links: dict[object, int] = {}
    with _open(image) as f:
        for member, _body, link in _walk(f, image):
            if member.kind != "file":
                continue
            files += 1
            if link is None:
                unpacked += member.size
            else:
                links[link] = max(links.get(link, 0), member.size)
    row.compressed = image.stat().st_size
    row.unpacked = unpacked + sum(links.values())
    row.files = files


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def ours(kernel: Kernel, target: str, work: Path) -> list[Case]:
    conf_text, drivers = TARGETS[target]
    conf = work / f"{target}.conf"
    conf.write_text(conf_text + COLLECTOR)
    image = work / f"mkkdumprd-{target}.img"
    env = base_env()
    # As installed by pip: bytecode compiled once (kept out of the checkout).
    env["PYTHONPYCACHEPREFIX"] = str(work / "pyc")
    cmd = [sys.executable, "-m", "mkkdumprd", "build", "-c", str(conf), "--no-hostonly",
           "--kver", kernel.kver, "--kmoddir", str(kernel.kmoddir),
           "--add-drivers", ",".join(drivers), "-o", str(image), "-q"]
    warm = dict(env, MKKDUMPRD_CACHE_DIR=str(work / "cache-warm"))
    subprocess.run([*cmd, "--force"], env=warm, check=True, capture_output=True)
    cold_dir = work / f"cache-cold-{target}"
    cold = dict(env, MKKDUMPRD_CACHE_DIR=str(cold_dir))
    # Up to date: the fast path replays the stamp the last full check wrote (run twice
    # first: a check right after a rebuild writes none while the image is racily new);
    # the full check runs with the stamps removed (mkkdumprd/uptodate/stamp.py).
    no_stamps = [sys.executable, "-c", "import glob, os, sys; "
                 "[os.unlink(p) for p in glob.glob(sys.argv[1] + '/uptodate-*.stamp')]",
                 warm["MKKDUMPRD_CACHE_DIR"]]
    return [
        Case(Row(target, "mkkdumprd cold"), [*cmd, "--force"], cold, image,
             prepare=[["rm", "-rf", str(cold_dir)]]),
        Case(Row(target, "mkkdumprd rebuild"), [*cmd, "--force"], warm, image),
        Case(Row(target, UP_TO_DATE), cmd, warm, image, prepare=[cmd, cmd], prepare_env=warm),
        Case(Row(target, UP_TO_DATE_FULL), cmd, warm, image, prepare=[no_stamps]),
    ]


def dracut(kernel: Kernel, target: str, work: Path, modules: list[str]) -> Case | None:
    exe = shutil.which("dracut")
    if exe is None:
        print("dracut not installed: skipped (apt-get install --no-install-recommends "
              "dracut-core)")
        return None
    image = work / f"dracut-{target}.img"
    confdir = work / "dracut.conf.d"
    confdir.mkdir(exist_ok=True)
    tmp = work / "dracut-tmp"
    tmp.mkdir(exist_ok=True)
    cmd = [exe, "--quiet", "--no-hostonly", "--kver", kernel.kver,
           "--kmoddir", str(kernel.kmoddir), "--conf", "/dev/null", "--confdir", str(confdir),
           "-m", "base busybox", "--add-drivers", " ".join(modules),
           "--install", " ".join(TOOLS), "--zstd", "--no-early-microcode",
           "--tmpdir", str(tmp), "--force", str(image)]
    return Case(Row(target, "dracut", note="dracut base+busybox"), cmd, base_env(), image)


def mkinitramfs(kernel: Kernel, target: str, work: Path, modules: list[str]) -> Case | None:
    exe = shutil.which("mkinitramfs")
    if exe is None:
        print("mkinitramfs not installed: skipped (apt-get install --no-install-recommends "
              "initramfs-tools-core)")
        return None
    if shutil.which("unshare") is None:
        print("mkinitramfs skipped: no unshare(1) to show the test tree as /lib/modules")
        return None
    conf = work / f"initramfs-tools-{target}"
    (conf / "hooks").mkdir(parents=True, exist_ok=True)
    (conf / "conf.d").mkdir(exist_ok=True)
    (conf / "scripts").mkdir(exist_ok=True)
    (conf / "initramfs.conf").write_text(
        "MODULES=list\nBUSYBOX=y\nKEYMAP=n\nCOMPRESS=zstd\nDEVICE=\nNFSROOT=auto\n"
        "RUNSIZE=10%\nFSTYPE=auto\n")
    (conf / "modules").write_text("".join(f"{m}\n" for m in modules))
    hook = conf / "hooks" / "kdump-tools"
    hook.write_text(
        "#!/bin/sh\n[ \"$1\" = prereqs ] && exit 0\n. /usr/share/initramfs-tools/hook-functions\n"
        + "".join(f"copy_exec \"$(command -v {t})\" /usr/sbin\n" for t in TOOLS))
    hook.chmod(0o755)
    # It checks the compressor against /boot/config-KVER; a private copy reads the test
    # kernel's config instead (the host's /boot stays out of this).
    local_exe = work / "mkinitramfs"
    local_exe.write_text(Path(exe).read_text().replace(
        '"/boot/config-${version}"', f'"{kernel.root}/boot/config-${{version}}"'))
    local_exe.chmod(0o755)
    exe = str(local_exe)
    lower = work / "ovl-lower"
    (lower / "modules").mkdir(parents=True, exist_ok=True)
    image = work / f"mkinitramfs-{target}.img"
    script = (f"mount -t overlay overlay -o lowerdir={lower}:/usr/lib /usr/lib && "
              f"mount --bind {kernel.root}/lib/modules /usr/lib/modules && "
              f"exec {exe} -d {conf} -o {image} {kernel.kver}")
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            f"mount -t overlay overlay -o lowerdir={lower}:/usr/lib /usr/lib"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"mkinitramfs skipped: cannot overlay /usr/lib in a private mount namespace "
              f"({probe.stderr.strip()})")
        return None
    return Case(Row(target, "mkinitramfs", note="initramfs-tools MODULES=list"), cmd,
                base_env(), image)


def floor_cases() -> list[Case]:
    """Python's own start-up, timed by the same runner: what no build can go below."""
    env = base_env()
    return [Case(Row("-", "python -c pass"), [sys.executable, "-c", "pass"], env, Path()),
            Case(Row("-", "python -I -S -c pass"), [sys.executable, "-I", "-S", "-c", "pass"],
                 env, Path())]


UP_TO_DATE = "mkkdumprd up-to-date"
UP_TO_DATE_FULL = "mkkdumprd utd full check"
GOAL_COLD = 0.25
GOAL_UP_TO_DATE = 0.08
GOAL_RATIO = 20.0


def print_goals(rows: list[Row]) -> list[dict[str, object]]:
    """Issue #24's build goals, PASS/FAIL per target with the figures."""
    out: list[dict[str, object]] = []
    floor = {r.tool: r.wall for r in rows if r.target == "-"}
    print(f"\ngoals (issue #24), medians; Python start-up floor in this run: "
          f"python -c pass {floor.get('python -c pass', float('nan')):.3f} s, "
          f"python -I -S -c pass {floor.get('python -I -S -c pass', float('nan')):.3f} s")
    for target in dict.fromkeys(r.target for r in rows if r.target != "-"):
        by = {r.tool: r.wall for r in rows if r.target == target}
        cold, utd, dr = (by.get("mkkdumprd cold"), by.get(UP_TO_DATE), by.get("dracut"))
        full = by.get(UP_TO_DATE_FULL)
        checks: list[tuple[str, float | None, str, bool | None]] = [
            ("cold build", cold, f"<= {GOAL_COLD:.2f} s",
             None if cold is None else cold <= GOAL_COLD),
            ("up to date", utd, f"<= {GOAL_UP_TO_DATE:.2f} s",
             None if utd is None else utd <= GOAL_UP_TO_DATE),
            ("  full check", full, "none; the run without a stamp, which writes it", None),
        ]
        ratio = dr / cold if dr and cold else None
        checks.append(("dracut / cold", ratio, f">= {GOAL_RATIO:.0f}x",
                       None if ratio is None else ratio >= GOAL_RATIO))
        for name, value, goal, ok in checks:
            verdict = ("    " if goal.startswith("none") else "n/a ") if ok is None \
                else ("PASS" if ok else "FAIL")
            shown = "-" if value is None else (f"{value:.1f}x" if "dracut" in name
                                               else f"{value:.3f} s")
            print(f"  {verdict} {target:<5} {name:<14} {shown:>9}  (goal {goal})")
            out.append({"target": target, "goal": name, "value": value, "pass": ok})
    return out


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def human(n: int) -> str:
    return f"{n / 1048576:.2f} MiB"


def _cpu(r: Row) -> float:
    """Median user+sys CPU seconds: on a busy machine, steadier than the wall time."""
    return statistics.median(r.cpus) if r.cpus else float("nan")


def print_table(rows: list[Row]) -> None:
    head = (f"{'target':<6} {'builder':<25} {'median s':>9} {'cpu s':>6} {'vs ours':>7} "
            f"{'compressed':>11} "
            f"{'unpacked':>11} {'files':>6} {'peak RSS':>9}")
    print(head)
    print("-" * len(head))
    for target in dict.fromkeys(r.target for r in rows):
        mine = [r for r in rows if r.target == target]
        if target == "-":
            for r in mine:
                print(f"{'-':<6} {r.tool:<25} {r.wall:9.3f} {_cpu(r):6.3f}")
            continue
        ref = next((r.wall for r in mine if r.tool == "mkkdumprd cold"), float("nan"))
        for r in mine:
            print(f"{r.target:<6} {r.tool:<25} {r.wall:9.3f} {_cpu(r):6.3f} {r.wall / ref:7.2f} "
                  f"{human(r.compressed):>11} {human(r.unpacked):>11} {r.files:6d} "
                  f"{statistics.median(r.rss_kb) / 1024 if r.rss_kb else 0:6.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--targets", default="local,nfs")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--no-profile", action="store_true",
                    help="skip the import-time, cProfile and by-step breakdowns")
    ap.add_argument("--no-handmade", action="store_true",
                    help="skip the hand-made cpio image comparison")
    args = ap.parse_args()
    kernel = debian_kernel()
    print(f"kernel {kernel.kver} from {kernel.root}; {os.cpu_count()} CPUs; "
          f"load average {loadavg()} before")
    with tempfile.TemporaryDirectory(prefix="mkkdumprd-bench-") as tmp:
        work = Path(tmp)
        cases: list[Case] = []
        for target in args.targets.split(","):
            mine = ours(kernel, target, work)
            manifest = read_manifest(mine[0].image) or {}
            modules = list(manifest.get("kernel_modules") or [])
            cases.extend(mine)
            for make in (dracut, mkinitramfs):
                c = make(kernel, target, work, modules)
                if c is not None:
                    cases.append(c)
        cases.extend(floor_cases())
        extra: dict[str, object] = {}
        if not args.no_profile:
            extra["profile"] = profile.report(cases[0].cmd, cases[0].env, work)
            extra["steps"] = steps.report(cases[0].cmd, cases[0].env)
        for rep in range(args.reps):
            # Alternate: each repetition starts at a different builder.
            order = cases[rep % len(cases):] + cases[:rep % len(cases)]
            for c in order:
                for prep in c.prepare:
                    subprocess.run(prep, check=True, env=c.prepare_env,
                                   stdout=subprocess.DEVNULL)
                # Untimed: the writeback the previous builder left (each one syncs its
                # image) is not charged to the next one's fsync.
                os.sync()
                res = run_measured(c.cmd, c.env)
                c.row.walls.append(float(res["wall"]))  # type: ignore[arg-type]
                c.row.cpus.append(float(res["cpu"]))  # type: ignore[arg-type]
                c.row.rss_kb.append(int(res["maxrss_kb"]))  # type: ignore[call-overload]
            print(f"  repetition {rep + 1}/{args.reps} done; load average {loadavg()}",
                  flush=True)
        for c in cases:
            if c.row.target != "-":
                image_sizes(c.row, c.image)
        rows = [c.row for c in cases]
        print()
        print_table(rows)
        print(f"\nload average {loadavg()} after; median of {args.reps} alternated runs; "
              "vs ours = median wall / mkkdumprd cold of the same target")
        extra["goals"] = print_goals(rows)
        if not args.no_handmade:
            extra["handmade"] = [handmade.report(c.image, work / f"hand-{c.row.target}")
                                 for c in cases if c.row.tool == "mkkdumprd cold"]
    if args.json:
        args.json.write_text(json.dumps(
            {"kernel": kernel.kver, "load_after": os.getloadavg(), "time": time.time(),
             "rows": [dict(asdict(r), wall=r.wall) for r in rows], **extra}, indent=1,
            default=str))


if __name__ == "__main__":
    main()
