"""Whether a vmcore holds the crash the first stage caused: its kernel log, read by
`makedumpfile --dump-dmesg` (the oracle every distribution ships with kdump)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mkkdumprd.errors import OperationError
from mkkdumprd.vmtest.tools import find_tool

# What a kernel logs for `echo c > /proc/sysrq-trigger` (6.1 and later).
SYSRQ_CRASH_LINES = ("sysrq: Trigger a crash", "Kernel panic - not syncing: sysrq triggered crash")


def dump_dmesg(vmcore: Path, out: Path | None = None) -> str:
    """The kernel log stored in `vmcore` (written to `out`, which must not exist yet)."""
    out = out or vmcore.with_name(vmcore.name + ".dump-dmesg.txt")
    r = subprocess.run([find_tool("makedumpfile"), "--dump-dmesg", str(vmcore), str(out)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not out.exists():
        raise OperationError(f"makedumpfile --dump-dmesg {vmcore} failed (rc {r.returncode}): "
                             f"{(r.stdout + r.stderr).strip()[-500:]}")
    return out.read_text(errors="replace")


def missing_crash_lines(dmesg: str) -> list[str]:
    """The lines of the sysrq crash that the log lacks (empty: the crash is there)."""
    return [line for line in SYSRQ_CRASH_LINES if line not in dmesg]


def crash_lines(dmesg: str) -> list[str]:
    """The log's lines that show the crash."""
    return [line for line in dmesg.splitlines() if any(c in line for c in SYSRQ_CRASH_LINES)]


def restore_flat(flat: Path, out: Path) -> Path:
    """`makedumpfile -R`: the flattened stream of an ssh dump (vmcore.flat) as a vmcore."""
    with open(flat, "rb") as src:
        r = subprocess.run([find_tool("makedumpfile"), "-R", str(out)], stdin=src,
                           capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not out.is_file():
        raise OperationError(f"makedumpfile -R could not rebuild {flat} (rc {r.returncode}): "
                             f"{(r.stdout + r.stderr).strip()[-500:]}")
    return out
