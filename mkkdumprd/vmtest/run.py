"""One proof: boot a kernel in QEMU, load the capture image with mkkdumprd's own loader,
crash the guest, watch the capture kernel, read the vmcore back and check its log.

`prove()` takes a `Proof` (what to boot and how) and returns a `Report`; it never raises
for a failure of the dump path (that is the report's verdict), only for what keeps the
test from running at all (QEMU, a kernel file or the image missing: one-line errors).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd.assemble.freshness import read_manifest
from mkkdumprd.errors import MkkdumprdError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.vmtest import (
    first_stage,
    image_request,
    real_target,
    report,
    targets,
    vmcore_check,
)
from mkkdumprd.vmtest.qemu import VM, VMSpec

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest

# Words the guest's capture kernel gets beside the arch's own: its console on the serial
# port QEMU logs, a panic ends the VM at once (with -no-reboot) instead of hanging it, and
# the image samples its memory (templates/memstat.sh.j2) for the report's peak.
CAPTURE_APPEND = ("console=ttyS0", "panic=-1", "kdump.memstat")
CONSOLE = "console=ttyS0"


@dataclass(frozen=True)
class Proof:
    kernel: Path                      # the kernel booted first and loaded as capture kernel
    image: Path                       # the capture image under test
    workdir: Path                     # scratch disks, first stage, console log
    crashkernel: str                  # e.g. "192M", from `crashkernel recommend`
    memory_mb: int = 1024
    accel: str = "tcg"
    kmoddir: Path | None = None       # for the kernel's built-in drivers
    base_cmdline: str | None = None   # the capture base (this machine's /proc/cmdline)
    # this machine's capture command line settings files: (path, host file), copied to the
    # same paths in the guest, where its loader applies them as `start` does
    cmdline_settings: tuple[tuple[str, Path], ...] = ()
    append: tuple[str, ...] = ()      # more capture-kernel words (kdump.timeout=N)
    bus: str | None = None            # scratch disk bus; None: one the image has drivers for
    timeout: float = 600.0            # the whole VM run
    log: Path | None = None           # console log (default workdir/console.log)
    # How the image under test was built (None: --image, then recovered from the image
    # by image_request.py when needed): an ssh stand-in and --real-target rebuild it with
    # a substituted destination/path (rebuild.py).
    request: BuildRequest | None = None
    real_target: bool = False         # dump to the configured server (real_target.py)
    # Where the guest's storage tools come from for a scratch stack (default: the
    # request's sysroot, else this machine).
    tools: Host | None = None


def first_kernel_append(crashkernel: str) -> str:
    return f"{CONSOLE} crashkernel={crashkernel} panic=-1 loglevel=4"


def _manifest(image: Path) -> dict[str, Any]:
    if not image.is_file():
        raise UsageError(f"capture image {image} does not exist")
    man = read_manifest(image)
    if man is None:
        raise UsageError(f"{image} is not an mkkdumprd image (no manifest); build it with "
                         "`mkkdumprd build` or let `mkkdumprd test --vm` build one")
    return man


def image_target(image: Path) -> dict[str, Any]:
    """The target as the image resolved it, from its manifest."""
    target = _manifest(image).get("config", {}).get("target")
    if not isinstance(target, dict):
        raise UsageError(f"the manifest of {image} names no dump target")
    return target


def capture_drivers(image: Path, kmoddir: Path | None) -> frozenset[str]:
    mods = _manifest(image).get("kernel_modules") or []
    names = {targets.module_name(str(m)) for m in mods}
    return frozenset(names) | targets.builtin_modules(kmoddir)


@dataclass
class _Watch:
    """When the console first showed each milestone (seconds since QEMU started)."""

    panic: float | None = None
    saved: float | None = None
    ended: bool = False


def _watch(vm: VM, timeout: float) -> _Watch:
    w = _Watch()
    deadline = time.monotonic() + timeout
    while True:
        text = vm.console()
        after = text.split(first_stage.CRASHING_MARKER, 1)
        if w.panic is None and len(after) == 2 and report.PANIC.search(after[1]):
            w.panic = vm.elapsed
        if w.saved is None and len(after) == 2 and report.SAVED.search(after[1]):
            w.saved = vm.elapsed
        if not vm.running:
            w.ended = True
            return w
        if time.monotonic() >= deadline:
            vm.kill()
            return w
        time.sleep(0.2)


def prove(p: Proof) -> report.Report:
    t0 = time.monotonic()
    if not p.kernel.is_file():
        raise UsageError(f"kernel {p.kernel} does not exist; pass --kernel FILE")
    try:
        with open(p.kernel, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read the kernel {p.kernel}: {exc.strerror} (run as root, "
                         "or pass a readable copy with --kernel)") from None
    target = image_target(p.image)
    drivers = capture_drivers(p.image, p.kmoddir)
    p.workdir.mkdir(parents=True, exist_ok=True)
    log = p.log or p.workdir / "console.log"
    request = p.request
    if request is None and (target.get("kind") == "ssh" or p.real_target
                            or target.get("stack")):
        # --image: the rebuild for the stand-in or the test folder, or the storage
        # discovery of a stacked target, needs its request
        request = image_request.request_of_image(p.image)
    tools = p.tools or (request.sysroot if request is not None else Host.this_machine())
    boot = targets.GuestBoot(p.kernel, p.kmoddir, tools, p.memory_mb, p.accel)
    standin = (real_target.real_target(target, request, drivers, p.workdir, boot=boot)
               if p.real_target else
               targets.stand_in(target, drivers, p.workdir, p.bus, request, boot))
    try:
        script = first_stage.crash_script(p.base_cmdline, (*CAPTURE_APPEND, *p.append),
                                          prepare=bool(standin.prepare))
        first = first_stage.build_first_stage(p.kernel, standin.image or p.image,
                                              p.workdir / "first-stage.img", script,
                                              settings=p.cmdline_settings,
                                              extra=standin.prepare)
        spec = VMSpec(p.kernel, first, first_kernel_append(p.crashkernel),
                      drives=standin.drives, guestfwd=standin.guestfwd,
                      open_network=standin.open_network,
                      memory_mb=p.memory_mb, accel=p.accel)
        with VM(spec, log, p.timeout) as vm:
            watch = _watch(vm, p.timeout)
        found = _judge(p, log, target, standin, watch, time.monotonic() - t0)
    finally:
        note = standin.close()
    # What closing the stand-in did that the report must say (--real-target's removal).
    return dataclasses.replace(found, stand_in=f"{found.stand_in}; {note}") if note else found


def _target_text(target: dict[str, Any]) -> str:
    kind = target.get("kind")
    if kind in ("nfs", "ssh"):
        return f"{kind} {target.get('server')}:{target.get('path')}"
    if kind == "raw":
        return f"raw {target.get('device')}"
    return f"{target.get('fstype') or 'local'} {target.get('device')}:{target.get('path')}"


def _judge(p: Proof, log: Path, target: dict[str, Any], standin: targets.StandIn,
           watch: _Watch, seconds: float) -> report.Report:
    console = log.read_bytes().decode("utf-8", "replace")
    common: dict[str, Any] = dict(
        console_log=str(log), kernel=str(p.kernel), image=str(p.image),
        target=_target_text(target), stand_in=standin.describe(), accel=p.accel,
        guest_memory_mb=p.memory_mb, crashkernel=p.crashkernel, seconds=seconds)
    steps = first_stage.parse_steps(console)
    before, marker, after = console.partition(first_stage.CRASHING_MARKER)
    prepared = steps.get("prepare")
    if not marker and prepared is not None and prepared.rc != 0:
        lines = report.console_lines(prepared.output)
        return report.Report("fail", report.STAND_IN_FAILED,
                             f"making the scratch stand-in failed (rc {prepared.rc})",
                             tuple(lines[-8:]), **common)
    if not marker:
        load = steps.get("load")
        lines = report.console_lines(load.output) if load else report.console_lines(before)
        detail = (f"the loader exited {load.rc}" if load and load.rc else
                  "the first kernel did not get to the load" if load is None else
                  "/sys/kernel/kexec_crash_loaded is not 1 after the load")
        return report.Report("fail", report.NOT_LOADED, detail, tuple(lines[-8:]), **common)
    finding = report.classify(after, missing_drivers=standin.missing_drivers,
                              vm_ended=watch.ended)
    memory = report.capture_memory(after)
    timing = (watch.saved - watch.panic if watch.saved is not None and watch.panic is not None
              else None)
    if finding.failed_step is not None:
        return report.Report("fail", finding.failed_step, finding.detail, finding.evidence,
                             panic_to_saved_s=timing, capture_memory=memory, **common)
    out = p.workdir / "vmcore"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    try:
        vmcore = standin.read_back(out)
        dmesg = vmcore_check.dump_dmesg(vmcore, p.workdir / "vmcore.dmesg.txt")
    except MkkdumprdError as exc:
        return report.Report("fail", report.INCOMPLETE, str(exc), finding.evidence,
                             panic_to_saved_s=timing, capture_memory=memory, **common)
    size = vmcore.stat().st_size
    lacking = vmcore_check.missing_crash_lines(dmesg)
    if lacking:
        return report.Report("fail", report.INCOMPLETE,
                             f"the vmcore's kernel log lacks {lacking}", finding.evidence,
                             panic_to_saved_s=timing, vmcore_bytes=size,
                             capture_memory=memory, **common)
    return report.Report("pass", None, f"{finding.detail}; read back as {vmcore}",
                         finding.evidence, panic_to_saved_s=timing, vmcore_bytes=size,
                         capture_memory=memory,
                         crash_lines=tuple(vmcore_check.crash_lines(dmesg)), **common)

