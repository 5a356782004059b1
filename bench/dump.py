"""Dump speed in QEMU: panic -> "dump saved" and vmcore size, 1 vs 2 CPUs (not a test).

    .venv/bin/python bench/dump.py [--mem 2048] [--fill 512] [--crashkernel 192]
                                   [--repeat 2] [--variants l1,l2,...] [--workdir DIR]
    .venv/bin/python bench/dump.py --breakdown [--breakdown-variants none,lzo,...]
                                   [--breakdown-vcpus 1,2] [--fill 512]

--breakdown: where a dump's time goes and what a second CPU does to it, from one crash per
vCPU count with many collectors timed in the capture kernel (bench/dump_parts/breakdown.py).

Both print first the host's own floor for a two-CPU speed-up, measured in the same run: how
much faster two CPU-bound processes run side by side than one (bench/dump_parts/
host_parallel.py); under TCG no guest can gain more from its second vCPU.

Every run boots the Debian kernel under TCG with -m MEM crashkernel=CKM, fills --fill MiB of
*kernel* memory with compressible data (pipe buffers written from Python with copies of the
loader's own source text: pipe pages are neither page cache nor user pages, so
`makedumpfile -d 31` keeps them, as it keeps slab on a busy server), loads the capture kernel
with the project's loader, crashes, and times, on the host, the console from the crash
marker to the capture script's "dump saved to". The vmcore is then copied off the ext4
disk, its size taken, and it is read back whole by the host's makedumpfile (re-filtered
without compression, which decompresses every page) to catch the corrupt pages that makedumpfile
issue #15 reports with --num-threads.

Variants (name: vCPUs, capture nr_cpus, collector):
    default  2 vCPUs, nr_cpus= as the loader chooses it, mkkdumprd's default collector
             (lzo: the capture script gives threads to zlib collectors only);
             x86_64.toml's max_cpus = 1 keeps nr_cpus=1, with 32 the loader chooses 2
    default1 the same with 1 vCPU (the loader keeps nr_cpus=1: one CPU online)
    d2  2 vCPUs, nr_cpus=2 given, mkkdumprd's default collector (no threads: lzo)
    l1  1 vCPU,  nr_cpus=1, makedumpfile -l -d 31                (one CPU)
    l2  2 vCPUs, nr_cpus=2, makedumpfile -l -d 31 (the script adds no threads to lzo)
    l2old 2 vCPUs, nr_cpus=2, makedumpfile -l -d 31 --num-threads 2 in core_collector (the
        user's own count: no preload, as before; aborted at the end of a large dump)
    l2n 2 vCPUs, nr_cpus=2, makedumpfile -l -d 31                (CPUs without threads)
    c1  1 vCPU,  nr_cpus=1, makedumpfile -c -d 31                (zlib)
    c2  2 vCPUs, nr_cpus=2, makedumpfile -c -d 31 --num-threads 2
    cyc64, cyc64m  l1 with --cyclic-buffer 64 KiB / 64 MiB (1.7.2 has no --non-cyclic): report and
        vmcore size against l1 say whether makedumpfile's memory changes what is dumped
Runs are interleaved (l1 l2 ... l1 l2 ...) and the minimum per variant is compared, since
this machine is shared with other QEMU guests and absolute times are noisy.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dump_parts import breakdown, guest, host_parallel
from tests.support.debian_kernel import Kernel, debian_kernel
from tests.vm.harness import disks
from tests.vm.harness import python_guest as pg
from tests.vm.harness.qemu import VM, Drive, VMError, VMSpec

SAVED = "dump saved to"
FILLED = "MKKDUMPRD-BENCH: filled"


@dataclass(frozen=True)
class Variant:
    name: str
    cpus: int
    collector: str
    note: str = ""


VARIANTS = {v.name: v for v in (
    # default*: no nr_cpus= word (the loader chooses, as `mkkdumprd start`), no collector
    # (mkkdumprd's, -l --message-level 7 -d 31: no progress meter on the serial console,
    # which costs TCG time of its own).
    Variant("default", 2, "", "default"),
    Variant("default1", 1, "", "default"),
    Variant("d2", 2, ""),
    Variant("l1", 1, "makedumpfile -l --message-level 23 -d 31"),
    Variant("l2", 2, "makedumpfile -l --message-level 23 -d 31"),
    Variant("l2old", 2, "makedumpfile -l --message-level 23 -d 31 --num-threads 2"),
    Variant("l2n", 2, "makedumpfile -l --message-level 23 -d 31"),
    Variant("c1", 1, "makedumpfile -c --message-level 23 -d 31"),
    Variant("c2", 2, "makedumpfile -c --message-level 23 -d 31 --num-threads 2"),
    # For the vmcore-size question (issue 24): does makedumpfile's memory change the dump?
    Variant("cyc64", 1, "makedumpfile -l --message-level 23 -d 31 --cyclic-buffer 64"),
    Variant("cyc64m", 1, "makedumpfile -l --message-level 23 -d 31 --cyclic-buffer 65536"),
)}



@dataclass(frozen=True)
class Run:
    variant: str
    seconds: float           # crash marker -> "dump saved to", host clock
    size: int                # vmcore bytes
    verified: str            # "ok" or makedumpfile's complaint
    report: str              # makedumpfile's page report, as printed in the capture kernel


def build_capture(kernel: Kernel, work: Path, fs_uuid: str, v: Variant) -> Path:
    conf = work / f"kdump-{v.name}.conf"
    collector = f"core_collector {v.collector}\n" if v.collector else ""
    conf.write_text(f"path /var/crash\n{collector}final_action poweroff\n")
    return guest.build_capture(kernel, conf, fs_uuid, work / f"capture-{v.name}.img")


def first_stage(kernel: Kernel, capture: Path, work: Path, v: Variant, fill: int) -> Path:
    script = pg.init_script([
        *guest.fill_steps(fill),
        pg.step("load", pg.LOADER, "load", "--kernel", "/boot/vmlinuz", "--initrd",
                "/boot/capture.img", "--append", "kdump.memstat",
                *(() if v.name.startswith("default") else ("--append", f"nr_cpus={v.cpus}"))),
    ], crash=True, crash_on_boot_cpu=True)
    return pg.build_python_first_stage(kernel.vmlinuz, capture, work / f"first-{v.name}.img",
                                       script)


def verify(vmcore: Path) -> str:
    """Read every page back: re-filter it uncompressed (every page is decompressed)."""
    out = vmcore.with_suffix(".plain")
    r = subprocess.run(["makedumpfile", "-d", "31", "--message-level", "4",
                        str(vmcore), str(out)], capture_output=True, text=True)
    out.unlink(missing_ok=True)
    text = (r.stdout + r.stderr).strip()
    bad = [ln for ln in text.splitlines() if re.search(r"fail|error|invalid", ln, re.I)]
    if r.returncode == 0 and not bad:
        return "ok"
    return f"rc {r.returncode}: " + " / ".join(bad or text.splitlines()[-2:])[:200]


def run(kernel: Kernel, first: Path, fs_uuid: str, work: Path, v: Variant, args: argparse.Namespace,
        i: int) -> Run:
    disk = disks.make_ext4(work / f"{v.name}-{i}.disk", fs_uuid, size_mb=2048,
                           content=disks.tree(work / "fs", "var/crash"))
    spec = VMSpec(kernel.vmlinuz, first,
                  f"console=ttyS0 crashkernel={args.crashkernel}M panic=-1 loglevel=4",
                  drives=(Drive(disk),), memory_mb=args.mem, cpus=v.cpus)
    log = work / f"{v.name}-{i}.log"
    with VM(spec, log, args.timeout) as vm:
        vm.wait_for(FILLED)
        vm.wait_for(pg.CRASHING_MARKER)
        t0 = time.monotonic()
        vm.wait_for(SAVED)
        seconds = time.monotonic() - t0
        vm.wait_exit()
    console = log.read_text(errors="replace")
    report = "\n".join(ln.strip() for ln in console.split(pg.CRASHING_MARKER, 1)[-1]
                       .splitlines() if re.search(r"pages\s*:|Memory Hole|Total pages|"
                                                  r"Cache pages|User process|Free pages|"
                                                  r"Zero pages|Hwpoison|Offline|"
                                                  r"saving vmcore|memstat|nr_cpus=", ln))
    dumps = disks.ext4_find_dumps(disk)
    vmcore = disks.ext4_dump(disk, f"/var/crash/{dumps[-1]}/vmcore", work / f"{v.name}-{i}.vmcore")
    size = vmcore.stat().st_size
    verified = verify(vmcore)
    if verified == "ok":
        vmcore.unlink()         # a failed one stays for a look
    disk.unlink()
    return Run(v.name, seconds, size, verified, report)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mem", type=int, default=2048)
    ap.add_argument("--fill", type=int, default=512, help="MiB of kernel memory to fill")
    ap.add_argument("--crashkernel", type=int, default=192)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--variants", default="default1,default,l1,l2")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--breakdown", action="store_true",
                    help="time collectors inside one capture kernel per vCPU count instead")
    ap.add_argument("--breakdown-variants", default=breakdown.DEFAULT_VARIANTS)
    ap.add_argument("--breakdown-vcpus", default="1,2")
    args = ap.parse_args()
    work = args.workdir or Path(f"/var/tmp/dump-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    work.mkdir(parents=True, exist_ok=True)
    kernel = debian_kernel()
    if args.breakdown:
        return run_breakdown(kernel, work, args)
    fs_uuid = str(uuid.uuid4())
    chosen = [VARIANTS[n] for n in args.variants.split(",")]
    firsts = {}
    for v in chosen:
        firsts[v.name] = first_stage(kernel, build_capture(kernel, work, fs_uuid, v), work, v,
                                     args.fill)
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"kernel {kernel.kver}; -m {args.mem} crashkernel={args.crashkernel}M; "
          f"{args.fill} MiB of kernel memory filled; host load average {load} on "
          f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} "
          "cores (the machine is shared: compare ratios, not absolute seconds)", flush=True)
    print(host_parallel.line(), flush=True)
    runs: list[Run] = []
    for i in range(args.repeat):
        for v in chosen:
            try:
                r = run(kernel, firsts[v.name], fs_uuid, work, v, args, i)
            except VMError as e:
                print(f"  {v.name} #{i}: FAILED {str(e)[:300]}", flush=True)
                continue
            runs.append(r)
            print(f"  {v.name} #{i}: {r.seconds:6.1f} s  vmcore {r.size / 1e6:7.1f} MB  "
                  f"read back: {r.verified}", flush=True)
            if i == 0 and r.report:
                print("    " + r.report.replace("\n", "\n    "), flush=True)
    print("\n| variant | vCPUs | collector | panic -> saved (min / median) | speed-up vs l1 "
          "(default*, d2: vs default1) | vmcore | read back |")
    print("|---|---|---|---|---|---|---|")
    base = min((r.seconds for r in runs if r.variant == "l1"), default=0.0)
    base1 = min((r.seconds for r in runs if r.variant == "default1"), default=0.0)
    print(f"host load average at the end: {Path('/proc/loadavg').read_text().split()[0]}")
    for v in chosen:
        mine = [r for r in runs if r.variant == v.name]
        if not mine:
            continue
        best = min(r.seconds for r in mine)
        med = statistics.median(r.seconds for r in mine)
        ref = base1 if not v.collector else base        # mkkdumprd's collector: default1
        ratio = f"{ref / best:.2f}x" if ref else "-"
        ok = "all ok" if all(r.verified == "ok" for r in mine) else \
            "; ".join(r.verified for r in mine if r.verified != "ok")
        print(f"| {v.name} | {v.cpus} | `{v.collector or 'mkkdumprd default'}` | "
              f"{best:.1f} / {med:.1f} s | {ratio} | {mine[0].size / 1e6:.1f} MB | {ok} |")
    return 0


def run_breakdown(kernel: Kernel, work: Path, args: argparse.Namespace) -> int:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    print(f"kernel {kernel.kver}; -m 2048 crashkernel={args.crashkernel}M; {args.fill} MiB "
          f"of kernel memory filled; {cores} host cores; host load average "
          f"{Path('/proc/loadavg').read_text().split()[0]} at the start", flush=True)
    print(host_parallel.line(), flush=True)
    steps: list[breakdown.Step] = []
    for n in (int(v) for v in args.breakdown_vcpus.split(",")):
        got = breakdown.crash_and_time(kernel, work / f"breakdown-{n}", n, args.fill,
                                       args.crashkernel, args.breakdown_variants)
        for st in got:
            print(f"  {n} vCPU(s) {st.name}: {st.seconds:.1f} s (rc {st.rc})", flush=True)
        steps += got
    print()
    print(breakdown.table(steps))
    print()
    print(breakdown.amdahl(steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
