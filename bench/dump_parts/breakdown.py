"""Where a dump's time goes, and what a second CPU does to it (bench/dump.py --breakdown).

One crash per vCPU count; in the capture kernel a kdump_pre hook (breakdown_hook.sh) runs
makedumpfile variants one after another on the same /proc/vmcore, before the real dump:

    none          -d 31, no compression: reading the old memory and writing it (the floor
                  that compression cannot change)
    lzo, zlib     -l / -c, one process, one thread (mkkdumprd's default is lzo)
    *-threads     the same with --num-threads 2 (what the capture script adds for 2 CPUs)
    *-split       --split into two files: two processes, each reading and compressing half
    lzo-nowrite   -F -l to /dev/null: reading and compressing without the disk

For each it prints the capture kernel's own time (/proc/uptime), the bytes written, the busy
time of each guest CPU (/proc/stat) and, from the host, the CPU time each QEMU thread got
(/proc/PID/task/*/stat: the vCPU threads "CPU n/TCG" and QEMU's main and I/O threads), so
the table says how much of a dump can run on a second CPU and how much CPU the second vCPU
really got on this host. Runs share one boot, so they see the same memory; the page cache
is dropped between them.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.dump_parts import guest
from tests.support.debian_kernel import Kernel
from tests.vm.harness import disks
from tests.vm.harness import python_guest as pg
from tests.vm.harness.qemu import VM, Drive, VMSpec

HOOK = Path(__file__).with_name("breakdown_hook.sh")
DEFAULT_VARIANTS = "none,lzo,lzo-threads,lzo-split,lzo-nowrite,zlib,zlib-threads,zlib-split"
_LINE = re.compile(r"BENCH: (\S+) rc=(\d+) secs=([\d.]+) kib=(\d+) busy0=([^|]*)\| "
                   r"busy1=([^|]*)\|")


@dataclass(frozen=True)
class Step:
    vcpus: int
    name: str
    rc: int
    seconds: float                  # in the capture kernel
    written: int                    # bytes in the scratch folder afterwards
    guest_busy: tuple[float, ...]   # seconds per guest CPU
    host_threads: dict[str, float]  # QEMU thread -> CPU seconds on the host
    host_wall: float
    load: str


def _thread_cpu(pid: int) -> dict[str, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = comm if comm.startswith("CPU ") else f"{comm} ({tid})"
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _busy(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (p.split(":") for p in text.split())}


def crash_and_time(kernel: Kernel, work: Path, vcpus: int, fill: int, crashkernel: int,
                   variants: str) -> list[Step]:
    work.mkdir(parents=True, exist_ok=True)
    if vcpus == 1:      # two threads or processes on one CPU only measure the switching
        variants = ",".join(v for v in variants.split(",")
                            if not v.endswith(("-threads", "-split")))
    fs_uuid = str(uuid.uuid4())
    conf = work / "kdump.conf"
    conf.write_text(f"path /var/crash\nkdump_pre {HOOK}\nhook_timeout 3600\n"
                    "final_action poweroff\n")
    image = guest.build_capture(kernel, conf, fs_uuid, work / "capture.img")
    script = pg.init_script([
        *guest.fill_steps(fill),
        pg.step("load", pg.LOADER, "load", "--kernel", "/boot/vmlinuz", "--initrd",
                "/boot/capture.img", "--append", f"nr_cpus={vcpus}",
                "--append", f"bench.v={variants}"),
    ], crash=True, crash_on_boot_cpu=True)
    first = pg.build_python_first_stage(kernel.vmlinuz, image, work / "first.img", script)
    disk = disks.make_ext4(work / "dump.disk", fs_uuid, size_mb=4096,
                           content=disks.tree(work / "fs", "var/crash"))
    spec = VMSpec(kernel.vmlinuz, first,
                  f"console=ttyS0 crashkernel={crashkernel}M panic=-1 loglevel=4",
                  drives=(Drive(disk),), memory_mb=2048, cpus=vcpus,
                  extra_args=("-name", "bench,debug-threads=on"))    # "CPU n/TCG" threads
    log = work / "console.log"
    marks: list[tuple[float, str, dict[str, float], str]] = []
    with VM(spec, log, 7200) as vm:
        pid = vm._proc.pid if vm._proc else 0
        seen = 0
        while True:
            text = log.read_text(errors="replace")
            lines = [ln for ln in text.splitlines() if ln.startswith("BENCH")]
            for ln in lines[seen:]:
                marks.append((time.monotonic(), ln, _thread_cpu(pid),
                              Path("/proc/loadavg").read_text().split()[0]))
            seen = len(lines)
            if "BENCH: done" in text:
                break
            if vm._proc is None or vm._proc.poll() is not None:
                sys.exit(f"the guest stopped before the breakdown ended: see {log}")
            time.sleep(0.5)
        vm.wait_exit()
    disk.unlink()
    steps = []
    begin: tuple[float, dict[str, float]] | None = None
    for t, ln, cpu, load in marks:
        if ln.startswith("BENCH-BEGIN"):
            begin = (t, cpu)
            continue
        m = _LINE.match(ln)
        if not m or begin is None:
            continue
        b0, b1 = _busy(m[5]), _busy(m[6])
        tick = 100.0                     # USER_HZ in /proc/stat
        steps.append(Step(
            vcpus, m[1], int(m[2]), float(m[3]), int(m[4]) * 1024,
            tuple((b1[c] - b0.get(c, 0)) / tick for c in sorted(b1)),
            {k: v - begin[1].get(k, 0.0) for k, v in cpu.items()
             if v - begin[1].get(k, 0.0) >= 0.2},
            t - begin[0], load))
    return steps


def table(steps: list[Step]) -> str:
    base = {s.name: s.seconds for s in steps if s.vcpus == 1}
    for s in steps:     # lzo-split at 2 vCPUs against lzo at 1: the same output, 2 CPUs
        base.setdefault(s.name, base.get(s.name.rsplit("-", 1)[0], 0.0))
    out = ["| vCPUs | variant | in the capture kernel | vs the same at 1 vCPU | written | "
           "guest CPUs busy | host CPU of the vCPU threads | QEMU's other threads | "
           "host load |", "|---|---|---:|---:|---:|---|---|---:|---:|"]
    for s in steps:
        vcpu = sorted((k, v) for k, v in s.host_threads.items() if k.startswith("CPU "))
        other = sum(v for k, v in s.host_threads.items() if not k.startswith("CPU "))
        ref = base.get(s.name)
        ratio = f"{ref / s.seconds:.2f}x" if ref and s.vcpus > 1 else "-"
        rc = "" if s.rc == 0 else f" (rc {s.rc})"
        out.append(
            f"| {s.vcpus} | {s.name}{rc} | {s.seconds:.1f} s | {ratio} | "
            f"{s.written / 1e6:.0f} MB | "
            f"{' + '.join(f'{b:.1f}' for b in s.guest_busy)} s | "
            f"{' + '.join(f'{v:.1f}' for _, v in vcpu)} s of {s.host_wall:.1f} s | "
            f"{other:.1f} s | {s.load} |")
    return "\n".join(out)


def amdahl(steps: list[Step]) -> str:
    """What spreading only the compression over 2 CPUs (makedumpfile --num-threads reads
    and writes on one thread) can give at best, from the 1-vCPU runs: the compressed dump
    minus the uncompressed one is taken as compression (an overestimate: the uncompressed
    dump writes more bytes), halved."""
    one = {s.name: s.seconds for s in steps if s.vcpus == 1}
    if "none" not in one or "lzo" not in one:
        return ""
    lines = []
    for comp in ("lzo", "zlib"):
        if comp not in one:
            continue
        par = max(0.0, one[comp] - one["none"])
        bound = one[comp] / (one["none"] + par / 2)
        lines.append(f"{comp}: {one[comp]:.1f} s at 1 vCPU, of which {one['none']:.1f} s "
                     f"is the uncompressed dump (reading + writing) and {par:.1f} s "
                     f"compression; with compression on 2 CPUs and nothing else the dump "
                     f"takes at best {one['none'] + par / 2:.1f} s: {bound:.2f}x")
    return "\n".join(lines)
