"""Check a vmcore by its kernel log, extracted with `makedumpfile --dump-dmesg`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .images import require_tool

# What a 6.1 kernel logs for `echo c > /proc/sysrq-trigger`.
SYSRQ_CRASH_LINES = ("sysrq: Trigger a crash", "Kernel panic - not syncing: sysrq triggered crash")


def dump_dmesg(vmcore: Path, out: Path | None = None) -> str:
    """The kernel log stored in `vmcore` (written to `out`, which must not exist yet)."""
    out = out or vmcore.with_name(vmcore.name + ".dump-dmesg.txt")
    r = subprocess.run([require_tool("makedumpfile"), "--dump-dmesg", str(vmcore), str(out)],
                       capture_output=True, text=True)
    if r.returncode != 0 or not out.exists():
        raise AssertionError(f"makedumpfile --dump-dmesg {vmcore} failed (rc {r.returncode}): "
                             f"{(r.stdout + r.stderr).strip()[-2000:]}")
    return out.read_text(errors="replace")


def assert_sysrq_crash(dmesg: str, what: str = "vmcore") -> None:
    """The log shows the crash the first stage triggered."""
    missing = [line for line in SYSRQ_CRASH_LINES if line not in dmesg]
    if missing:
        tail = "\n".join(dmesg.splitlines()[-20:])
        raise AssertionError(f"{what}: kernel log lacks {missing}; its tail:\n{tail}")
