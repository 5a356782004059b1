"""The smallest crashkernel= that still gives a vmcore, measured in QEMU (not a test).

    .venv/bin/python bench/crashkernel_min.py [--mem 1024,2048,4096] [--lo 64] [--hi 512]
                                              [--step 8] [--timeout 240] [--workdir DIR]
                                              [--cma MiB] [--cpus N]

With --cma N (e.g. --cma 256 --lo 56 --hi 128 --step 2) the probes boot Debian unstable's
newest kernel (7.x, CONFIG_CMA=y) with `crashkernel=XM crashkernel=NM,cma` and bisect the
fixed part X alone: the smallest reservation the running system loses for good, beside
`recommend`'s fixed_bytes for the same kernel and image.

With --cpus N (x86_64) the guests get N vCPUs, the capture kernel nr_cpus=N (forced: the
loader would drop to one CPU in a reservation too small for its estimate) and the crash
runs on CPU 0, so all N come up and the collector runs with --num-threads N.

For the local-target capture image (`mkkdumprd build --no-hostonly --add-drivers
virtio_pci,virtio_blk,ext4 --target local:UUID=...`), every probe boots the Debian kernel
under TCG with `-m RAM crashkernel=XM`, loads the capture kernel with the project's own
loader (python3 -m mkkdumprd.loader, as in tests/vm/test_loader_vm.py), crashes it, and
counts the probe a success only when a complete vmcore is on the ext4 disk. The minimum is
found by bisection in --step MiB steps between --lo and --hi (mkkdumprd/vmtest/measure.py,
which `mkkdumprd test --vm --measure-crashkernel` uses for one RAM size), assuming more
memory never hurts; after the first RAM size, the previous minimum and the step below it are probed
first, since the answer rarely moves far.

Printed beside it: `mkkdumprd crashkernel recommend --mem RAM --image IMG --kernel VMLINUZ`
(estimate and arch table), Fedora's x86_64 default (kdump-utils: 2G-64G:256M,64G-:512M,
nothing below 2 GiB) and Debian's (kdump-tools >= 1:1.9: 512M-:192M), each evaluated with
the kernel's rules by `crashkernel parse`. Aim (issue 5): measured <= estimate <= 1.5 x
measured.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dump_parts import guest
from mkkdumprd.arch import load_arch
from mkkdumprd.crashkernel.parse import CrashkernelInvalid, parse_crashkernel
from mkkdumprd.crashkernel.size import MiB
from mkkdumprd.vmtest.measure import minimum
from tests.support.debian_kernel import Kernel, debian_kernel, debian_sid_kernel
from tests.vm.harness import disks
from tests.vm.harness import python_guest as pg
from tests.vm.harness.qemu import VM, Drive, VMError, VMSpec

REPO = Path(__file__).resolve().parents[1]
FEDORA = "2G-64G:256M,64G-:512M"
DEBIAN = "512M-:192M"
LOAD = f"{pg.LOADER} load --kernel /boot/vmlinuz --initrd /boot/capture.img"
NOT_LOADED = "MKKDUMPRD-BENCH: not loaded"
# What a failed probe shows on the console, first match named.
FAILURE_SIGNS = (
    ("initramfs unpack", r"Initramfs unpacking failed|Unable to mount root fs"),
    ("oom", r"deadlocked on memory|Out of memory|oom-kill|invoked oom-killer"),
    ("capture panic", r"Kernel panic - not syncing(?!: sysrq)"),
    ("kdump failure", r"kdump: .*(fail|FAIL)"),
)


@dataclass(frozen=True)
class Probe:
    mem: int
    ck: int
    ok: bool
    seconds: float
    why: str


def build_capture(kernel: Kernel, work: Path, fs_uuid: str) -> Path:
    return guest.build_capture(kernel, None, fs_uuid, work / "capture.img")


def first_stage(kernel: Kernel, capture: Path, work: Path, cpus: int = 1) -> Path:
    load = LOAD + (f" --append nr_cpus={cpus}" if cpus > 1 else "")
    script = pg.init_script([
        pg.step("load", load),
        f'[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || '
        f'{{ echo "{NOT_LOADED}"; poweroff -f; }}\n',
    ], crash=True, crash_on_boot_cpu=cpus > 1)
    return pg.build_python_first_stage(kernel.vmlinuz, capture, work / "first.img", script)


def probe(kernel: Kernel, first: Path, fs_uuid: str, work: Path, mem: int, ck: int,
          timeout: float, cma: int = 0, cpus: int = 1) -> Probe:
    tag = f"m{mem}-ck{ck}" + (f"-cma{cma}" if cma else "")
    disk = disks.make_ext4(work / f"{tag}.disk", fs_uuid,
                           content=disks.tree(work / "fs", "var/crash"))
    words = f"crashkernel={ck}M" + (f" crashkernel={cma}M,cma" if cma else "")
    spec = VMSpec(kernel.vmlinuz, first, f"console=ttyS0 {words} panic=-1 loglevel=4",
                  drives=(Drive(disk),), memory_mb=mem, cpus=cpus)
    log = work / f"{tag}.log"
    why = ""
    t0 = time.monotonic()
    try:
        with VM(spec, log, timeout) as vm:
            vm.wait_exit()
    except VMError:
        why = f"timeout after {timeout:.0f} s"
    seconds = time.monotonic() - t0
    console = log.read_text(errors="replace")
    steps = pg.parse_steps(console)
    ok = False
    if "load" in steps and steps["load"].rc != 0:
        why = "load refused: " + steps["load"].output.strip().replace("\n", " ")[:160]
    elif NOT_LOADED in console:
        why = "not loaded"
    else:
        dumps = disks.ext4_find_dumps(disk)
        names = ({e.name for e in disks.ext4_ls(disk, f"/var/crash/{dumps[0]}")}
                 if len(dumps) == 1 else set())
        ok = "vmcore" in names and "vmcore-incomplete" not in names
        if ok and cpus > 1 and f"--num-threads {cpus}" not in console:
            ok, why = False, f"dumped, but not with --num-threads {cpus}"
        if not ok and not why:
            after = console.split(pg.CRASHING_MARKER, 1)[-1]
            why = next((name for name, rx in FAILURE_SIGNS if re.search(rx, after)),
                       f"no vmcore (dump dirs {dumps}, files {sorted(names)})")
    disk.unlink()
    if ok:
        log.unlink()
    return Probe(mem, ck, ok, seconds, why or "vmcore saved")


class ProbeFn:
    def __init__(self, kernel: Kernel, first: Path, fs_uuid: str, work: Path, mem: int,
                 timeout: float, log: list[Probe], cma: int = 0, cpus: int = 1) -> None:
        self.args = (kernel, first, fs_uuid, work)
        self.mem, self.timeout, self.log, self.cma, self.cpus = mem, timeout, log, cma, cpus

    def __call__(self, ck: int) -> bool:
        p = probe(*self.args, self.mem, ck, self.timeout, self.cma, self.cpus)
        self.log.append(p)
        print(f"  -m {p.mem:<5} crashkernel={p.ck}M  {'ok  ' if p.ok else 'FAIL'}  "
              f"{p.seconds:5.0f} s  {p.why}", flush=True)
        return p.ok


def recommend(kernel: Kernel, capture: Path, mem: int) -> dict[str, object]:
    # --root: the kernel's own tree, so its config (CMA or not) decides the layout
    argv = [sys.executable, "-m", "mkkdumprd", "crashkernel", "recommend", "--arch", "x86_64",
            "--mem", f"{mem}M", "--image", str(capture), "--kernel", str(kernel.vmlinuz),
            "--kver", kernel.kver, "--root", str(kernel.root), "--json"]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True)
    data: dict[str, object] = json.loads(r.stdout)
    return data


def table_value(value: str, mem: int) -> int:
    try:
        return parse_crashkernel(f"crashkernel={value}", mem * MiB,
                                 load_arch("x86_64")).size // MiB
    except CrashkernelInvalid:
        return 0


def _cell(value: int, measured: int) -> str:
    return f"{value}M ({value / measured:.2f}x)" if value else "0 (none)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mem", default="1024,2048,4096", help="guest RAM sizes, MiB")
    ap.add_argument("--lo", type=int, default=64)
    ap.add_argument("--hi", type=int, default=512)
    ap.add_argument("--step", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=240.0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--cma", type=int, default=0,
                    help="MiB of crashkernel=,cma beside the fixed part bisected (sid kernel)")
    ap.add_argument("--cpus", type=int, default=1,
                    help="vCPUs and capture nr_cpus (the dump then runs --num-threads N)")
    args = ap.parse_args()
    work = args.workdir or Path(f"/tmp/crashkernel-min-{time.strftime('%Y%m%d-%H%M%S')}")
    work.mkdir(parents=True, exist_ok=True)
    kernel = debian_sid_kernel() if args.cma else debian_kernel()
    fs_uuid = str(uuid.uuid4())
    t0 = time.monotonic()
    capture = build_capture(kernel, work, fs_uuid)
    first = first_stage(kernel, capture, work, args.cpus)
    print(f"kernel {kernel.kver}; capture image {capture} ({capture.stat().st_size >> 10} KiB); "
          f"first stage {first.stat().st_size >> 20} MiB; work dir {work}", flush=True)

    rows = []
    probes: list[Probe] = []
    guess: int | None = None
    for mem in (int(m) for m in args.mem.split(",")):
        rec = recommend(kernel, capture, mem)
        est = rec["estimate"]
        assert isinstance(est, dict)
        estimate = int(est["rounded"]) // MiB
        table = int(str(rec["table_size"])) // MiB
        if args.cma:
            # the fixed part is what is bisected and compared
            estimate = int(str(rec["fixed_bytes"])) // MiB
            table = estimate
        print(f"-m {mem}: recommend {rec.get('cmdline')}, table {table}M", flush=True)
        found = minimum(ProbeFn(kernel, first, fs_uuid, work, mem, args.timeout, probes,
                                args.cma, args.cpus),
                        args.lo, args.hi, args.step, guess)
        guess = found
        rows.append((mem, found, estimate, table, table_value(FEDORA, mem),
                     table_value(DEBIAN, mem)))

    print(f"\nmeasured in {time.monotonic() - t0:.0f} s, {len(probes)} probes; "
          f"step {args.step}M, range {args.lo}M..{args.hi}M\n")
    if args.cma:
        print(f"fixed part bisected beside crashkernel={args.cma}M,cma; 'recommend "
              "estimate' and 'arch table' are recommend's fixed_bytes")
    print("| guest RAM | measured min | recommend estimate | estimate/min | arch table | "
          "Fedora | Debian |")
    print("|---|---|---|---|---|---|---|")
    failures = 0
    for mem, found, estimate, table, fedora, debian in rows:
        if found is None:
            print(f"| {mem}M | > {args.hi}M | {estimate}M | - | {table}M | {fedora}M | "
                  f"{debian}M |")
            failures += 1
            continue
        ratio = estimate / found
        mark = "" if 1.0 <= ratio <= 1.5 else " (outside 1.0-1.5)"
        failures += bool(mark)
        print(f"| {mem}M | {found}M | {estimate}M | {ratio:.2f}{mark} | "
              f"{_cell(table, found)} | {_cell(fedora, found)} | {_cell(debian, found)} |")
    print(f"\naim (measured <= estimate <= 1.5 x measured): "
          f"{'met' if not failures else f'missed for {failures} RAM size(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
