"""Check a vmcore by its kernel log, extracted with `makedumpfile --dump-dmesg` (the product's
mkkdumprd/vmtest/vmcore_check.py)."""

from __future__ import annotations

from mkkdumprd.vmtest.vmcore_check import SYSRQ_CRASH_LINES, dump_dmesg, missing_crash_lines

__all__ = ["SYSRQ_CRASH_LINES", "assert_sysrq_crash", "dump_dmesg"]


def assert_sysrq_crash(dmesg: str, what: str = "vmcore") -> None:
    """The log shows the crash the first stage triggered."""
    missing = missing_crash_lines(dmesg)
    if missing:
        tail = "\n".join(dmesg.splitlines()[-20:])
        raise AssertionError(f"{what}: kernel log lacks {missing}; its tail:\n{tail}")
