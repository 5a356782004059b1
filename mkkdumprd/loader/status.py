"""Is a crash kernel loaded, how much memory is reserved, and what did we load.

The kernel only says "loaded" (/sys/kernel/kexec_crash_loaded) and how big the reservation
is (/sys/kernel/kexec_crash_size, bytes, high + low). What was loaded is our own record,
written at load time to /run/mkkdumprd/loaded.json (tmpfs: gone after a reboot, as the
loaded image is). Exit codes follow `kdumpctl status`: 0 loaded, 3 not loaded.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from mkkdumprd import json_input
from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.host import Host
from mkkdumprd.human_size import human_size

CRASH_LOADED = PurePosixPath("/sys/kernel/kexec_crash_loaded")
CRASH_SIZE = PurePosixPath("/sys/kernel/kexec_crash_size")
# The name since the kexec sysfs entries moved (Nov 2025); the old one is a deprecated
# compat link (Documentation/ABI/obsolete/sysfs-kernel-kexec-kdump): new first.
CRASH_SIZE_NEW = PurePosixPath("/sys/kernel/kexec/crash_size")
RECORD = PurePosixPath("/run/mkkdumprd/loaded.json")

EXIT_LOADED = 0
EXIT_NOT_LOADED = 3


@dataclass(frozen=True)
class Status:
    loaded: bool
    reserved: int | None          # None: the kernel has no kexec/crash support
    record: dict[str, Any] | None

    @property
    def exit_code(self) -> int:
        return EXIT_LOADED if self.loaded else EXIT_NOT_LOADED


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def reserved_bytes(host: Host) -> int | None:
    new = _int(host.read_optional(CRASH_SIZE_NEW))
    return new if new is not None else _int(host.read_optional(CRASH_SIZE))


def read_record(host: Host) -> dict[str, Any] | None:
    text = host.read_optional(RECORD)
    if text is None:
        return None
    try:
        data = json_input.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def write_record(host: Host, record: dict[str, Any]) -> None:
    """Atomically replace the record (temp file in the same directory, fsync, rename)."""
    path = host.path(RECORD)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def clear_record(host: Host) -> None:
    with contextlib.suppress(FileNotFoundError):
        host.path(RECORD).unlink()


def read_status(host: Host) -> Status:
    loaded = _int(host.read_optional(CRASH_LOADED)) == 1
    return Status(loaded=loaded, reserved=reserved_bytes(host), record=read_record(host))


def format_status(st: Status) -> str:
    lines = [f"crash kernel: {'loaded' if st.loaded else 'not loaded'}"]
    if st.reserved is None:
        lines.append("reservation:  unknown (no /sys/kernel/kexec_crash_size: kernel without "
                     "kexec/crash dump support)")
    elif st.reserved == 0:
        lines.append("reservation:  none (crashkernel= is missing from the kernel command line)")
    else:
        lines.append(f"reservation:  {human_size(st.reserved)}")
    rec = st.record
    if st.loaded and rec:
        lines.append(f"kernel:       {rec.get('kernel')} ({rec.get('kernel_how', 'as is')})")
        lines.append(f"loaded via:   {_path_words(rec)}")
        lines.append(f"image:        {rec.get('initrd') or '(none)'}")
        lines.append(f"cmdline:      {rec.get('cmdline')}")
        lines += [f"  set by:     {w.get('word')} ({w.get('from')})"
                  for w in _configured_words(rec)]
        if rec.get("loaded_at"):
            lines.append(f"loaded at:    {rec.get('loaded_at')}")
    elif st.loaded:
        lines.append("loaded by:    another tool (no mkkdumprd record in /run/mkkdumprd)")
    elif rec:
        lines.append(f"note:         stale record of {rec.get('kernel')} (unloaded by another "
                     "tool or a failed load)")
    return "\n".join(lines)


def _configured_words(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded words an administrator set (settings files, --cmdline, --append)."""
    words = rec.get("cmdline_words")
    if not isinstance(words, list):
        return []
    return [w for w in words if isinstance(w, dict) and isinstance(w.get("from"), str)
            and w["from"] != "/proc/cmdline" and " default (data/arch/" not in w["from"]]


def _path_words(rec: dict[str, Any]) -> str:
    path = rec.get("path", "kexec_file_load")   # records from before the fallback existed
    if path == "kexec_load":
        return "kexec_load (kexec-tools `kexec -p`; this kernel has no kexec_file_load)"
    return str(path)


def status_json(st: Status) -> dict[str, Any]:
    return {"loaded": st.loaded, "reserved": st.reserved,
            "kernel": (st.record or {}).get("kernel") if st.loaded else None,
            "initrd": (st.record or {}).get("initrd") if st.loaded else None,
            "cmdline": (st.record or {}).get("cmdline") if st.loaded else None,
            "cmdline_words": (st.record or {}).get("cmdline_words") if st.loaded else None,
            "path": (st.record or {}).get("path", "kexec_file_load")
            if st.loaded and st.record else None}
