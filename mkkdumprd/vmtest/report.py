"""What `mkkdumprd test --vm` found: the verdict, the step that failed and its evidence.

`classify` reads the guest console (pure: text in, finding out) and names the first step
of the dump path that did not happen; `Report` carries that with the figures (time from
panic to saved dump, vmcore size, the capture kernel's memory) and renders it for people
(`render`) and programs (`as_json`, one object; JSON_KEYS are always present).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mkkdumprd.human_size import human_size

# The steps, in the order the dump path takes them; `failed_step` is one of these or None.
# The first is the test's own: the guest could not make the scratch stand-in (a block
# stack or filesystem made in the first stage, local_target.py).
STAND_IN_FAILED = "stand-in could not be made"
NOT_LOADED = "capture kernel did not load"
NOT_BOOTED = "capture kernel did not boot"
DRIVER_MISSING = "driver for the target missing"
TARGET_TIMEOUT = "target not found within the timeout"
COLLECTOR_FAILED = "collector failed"
INCOMPLETE = "incomplete"
STEPS = (STAND_IN_FAILED, NOT_LOADED, NOT_BOOTED, DRIVER_MISSING, TARGET_TIMEOUT,
         COLLECTOR_FAILED, INCOMPLETE)

JSON_KEYS = ("verdict", "failed_step", "detail", "evidence", "panic_to_saved_s",
             "vmcore_bytes", "capture_memory_bytes", "capture_memory_total_bytes",
             "console_log", "kernel", "image",
             "target", "stand_in", "accel", "guest_memory_mb", "crashkernel", "seconds",
             "crash_lines", "measure")

# The capture image's /init says this first (templates/init.j2).
IMAGE_STARTED = re.compile(r"kdump: capture image by mkkdumprd")
SAVED = re.compile(r"kdump: dump saved to (?P<where>.*)")
FAILED = re.compile(r"kdump: dump failed: (?P<why>.*)")
# The bounded waits for the target (lib.sh.j2 kdump_wait, the NFS and ssh retries).
WAITING = re.compile(r"kdump: (?:error: gave up waiting for|waiting for) ")
PANIC = re.compile(r"Kernel panic - not syncing")
# Signs of a capture kernel that died before its /init spoke, first match named.
BOOT_FAILURES = (
    re.compile(r"Initramfs unpacking failed.*|Unable to mount root fs.*"),
    re.compile(r".*(?:deadlocked on memory|Out of memory|invoked oom-killer).*"),
    re.compile(r"Kernel panic - not syncing(?!: sysrq).*"),
)
# The capture image's memstat line (templates/memstat.sh.j2, with kdump.memstat on the
# capture command line): MemTotal and the least MemAvailable sampled once a second from
# before the target is set up to the final action.
MEMSTAT = re.compile(r"kdump: memstat: MemTotal=(?P<total>\d+)kB "
                     r"MinMemAvailable=(?P<min>\d+)kB samples=(?P<n>\d+)")
_CONSOLE_NOISE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


@dataclass(frozen=True)
class Finding:
    failed_step: str | None
    detail: str
    evidence: tuple[str, ...]


def console_lines(text: str) -> list[str]:
    return [line for line in _CONSOLE_NOISE.sub("", text).splitlines() if line.strip()]


def _last(rx: re.Pattern[str], lines: Sequence[str]) -> str | None:
    return next((line for line in reversed(lines) if rx.search(line)), None)


def classify(after_crash: str, *, missing_drivers: Sequence[str] = (),
             vm_ended: bool = True) -> Finding:
    """The first step the capture path did not take, from the console after the crash.

    `missing_drivers`: the drivers of the stand-in's disk or network card that the image
    lacks (named when the target was not found); `vm_ended`: QEMU exited on its own (not
    killed at the timeout).
    A console that shows the dump saved gives no failed step here: the read-back decides.
    """
    lines = console_lines(after_crash)
    started = _last(IMAGE_STARTED, lines)
    if started is None:
        sign = next((m.group(0) for rx in BOOT_FAILURES for line in lines
                     if (m := rx.search(line))), None)
        why = f": {sign}" if sign else (" within the time limit" if not vm_ended else "")
        return Finding(NOT_BOOTED, f"the capture image's /init never ran{why}",
                       tuple(lines[-8:]))
    saved = _last(SAVED, lines)
    if saved is not None:
        return Finding(None, saved.split("kdump: ", 1)[1], (saved,))
    waited = [line for line in lines if WAITING.search(line)]
    failed = _last(FAILED, lines)
    not_found = failed is not None and any(w in failed for w in ("within", "did not appear"))
    if not_found or (failed is None and waited):
        shown = tuple(dict.fromkeys([*waited[-1:], *([failed] if failed else [])]))
        if missing_drivers:
            return Finding(DRIVER_MISSING,
                           f"the image has no driver for the stand-in target's device "
                           f"({', '.join(missing_drivers)}), so the target never appeared",
                           shown)
        what = failed or waited[-1]
        return Finding(TARGET_TIMEOUT, what.split("kdump: ", 1)[1], shown)
    if failed is not None:
        idx = lines.index(failed)
        return Finding(COLLECTOR_FAILED, failed.split("kdump: ", 1)[1],
                       tuple(lines[max(0, idx - 5):idx + 1]))
    return Finding(INCOMPLETE, "the capture image neither saved a dump nor reported a failure"
                   + ("" if vm_ended else " within the time limit"), tuple(lines[-8:]))


@dataclass(frozen=True)
class CaptureMemory:
    """The capture kernel's memory as its memstat line gives it (bytes)."""

    total: int          # MemTotal: what the capture kernel had after its own boot
    peak_used: int      # MemTotal - the least MemAvailable sampled
    samples: int


def capture_memory(after_crash: str) -> CaptureMemory | None:
    """The capture image's memstat line, when the console shows it."""
    m = MEMSTAT.search(after_crash)
    if m is None:
        return None
    total, least = int(m.group("total")) * 1024, int(m.group("min")) * 1024
    return CaptureMemory(total, max(0, total - least), int(m.group("n")))


@dataclass(frozen=True)
class Report:
    verdict: str                        # "pass" or "fail"
    failed_step: str | None
    detail: str
    evidence: tuple[str, ...]
    console_log: str
    kernel: str
    image: str
    target: str
    stand_in: str
    accel: str
    guest_memory_mb: int
    crashkernel: str
    seconds: float
    panic_to_saved_s: float | None = None
    vmcore_bytes: int | None = None
    capture_memory: CaptureMemory | None = None
    crash_lines: tuple[str, ...] = ()
    measure: dict[str, Any] | None = field(default=None)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "verdict": self.verdict, "failed_step": self.failed_step, "detail": self.detail,
            "evidence": list(self.evidence),
            "panic_to_saved_s": (round(self.panic_to_saved_s, 1)
                                 if self.panic_to_saved_s is not None else None),
            "vmcore_bytes": self.vmcore_bytes,
            "capture_memory_bytes": (self.capture_memory.peak_used
                                     if self.capture_memory else None),
            "capture_memory_total_bytes": (self.capture_memory.total
                                           if self.capture_memory else None),
            "console_log": self.console_log, "kernel": self.kernel, "image": self.image,
            "target": self.target, "stand_in": self.stand_in, "accel": self.accel,
            "guest_memory_mb": self.guest_memory_mb, "crashkernel": self.crashkernel,
            "seconds": round(self.seconds, 1), "crash_lines": list(self.crash_lines),
            "measure": self.measure,
        }
        assert tuple(doc) == JSON_KEYS
        return doc

    def render(self) -> str:
        head = ("PASS: a complete vmcore was saved and its log shows the crash" if self.passed
                else f"FAIL: {self.failed_step}")
        out = [head, f"  {self.detail}"]
        out += [f"kernel:        {self.kernel}",
                f"image:         {self.image}",
                f"target:        {self.target}",
                f"stand-in:      {self.stand_in}",
                f"guest:         {self.guest_memory_mb} MiB, crashkernel={self.crashkernel}, "
                f"{self.accel.upper()}"]
        if self.panic_to_saved_s is not None:
            out.append(f"panic->saved:  {self.panic_to_saved_s:.1f} s")
        if self.vmcore_bytes is not None:
            out.append(f"vmcore:        {human_size(self.vmcore_bytes)} "
                       f"({self.vmcore_bytes} bytes)")
        if self.capture_memory is not None:
            cm = self.capture_memory
            out.append(f"capture mem:   {human_size(cm.peak_used)} at peak of "
                       f"{human_size(cm.total)} (MemTotal - least MemAvailable of "
                       f"{cm.samples} samples, 1 s apart, from /init to the final action)")
        if self.crash_lines:
            out.append("the crash, as the vmcore's kernel log has it:")
            out += [f"    {line}" for line in self.crash_lines]
        if self.evidence and not self.passed:
            out.append("console lines that show it:")
            out += [f"    {line}" for line in self.evidence]
        if self.measure is not None:
            m = self.measure
            smallest = f"{m['minimum_mb']}M" if m["minimum_mb"] is not None else "none found"
            live = f"{m['live_mb']}M" if m["live_mb"] is not None else "none"
            out.append(f"smallest crashkernel= that dumped: {smallest} (searched "
                       f"{m['low_mb']}M..{m['high_mb']}M in {m['step_mb']}M steps, "
                       f"{len(m['probes'])} boots); this machine reserves {live}; "
                       f"recommend says {m['recommended']}")
            if m["minimum_mb"] and m["live_mb"]:
                verdict = ("enough" if m["live_mb"] >= m["minimum_mb"] else
                           "TOO SMALL: the capture kernel would not dump with it")
                out.append(f"this machine's reservation is {m['live_mb'] / m['minimum_mb']:.2f}"
                           f" x the smallest that dumped: {verdict}")
        out.append(f"console log:   {self.console_log}")
        out.append(f"time:          {self.seconds:.1f} s")
        return "\n".join(out)
