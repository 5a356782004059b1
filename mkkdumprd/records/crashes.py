"""The crash directories of this host: `<path>/<host>-<YYYY-MM-DD-HH:MM:SS>/`, as the
capture image names them (the capture kernel's clock, UTC) and as `mkkdumprd pstore`
creates them for a crash that left only pstore records.

Each is read without trusting it: files through input_file (bounded), names matched
strictly. What a directory holds decides what `report` says: the outcome record (the
directory's own, else one found in its pstore/ files), the vmcore, the panic line
(vmcore-dmesg.txt, else the pstore dmesg records).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from mkkdumprd.host import Host
from mkkdumprd.input_file import InputFileError, read_input
from mkkdumprd.records.outcome import OUTCOME_FILE, Outcome, read_outcome

DIR_NAME = re.compile(r"(?P<host>[A-Za-z0-9_.:\[\]-]{1,255})-"
                      r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}:[0-9]{2}:[0-9]{2})\Z")
DATE_FORMAT = "%Y-%m-%d-%H:%M:%S"
PSTORE_SUBDIR = "pstore"
VMCORE_NAMES = ("vmcore", "vmcore.flat", "vmcore-incomplete")
DMESG_MAX = 16 << 20
# The lines that say why the first kernel died, best first.
_PANIC = (re.compile(r"Kernel panic - not syncing:.*"), re.compile(r"sysrq: Trigger a crash.*"),
          re.compile(r"(?:BUG|Oops|general protection fault)[: ].*"))
_LOG_HEAD = re.compile(r"^(?:<[0-9]{1,3}>)?(?:\[ *[0-9]+\.[0-9]+\] ?)?")


@dataclass(frozen=True)
class Crash:
    directory: PurePosixPath
    time: datetime
    vmcore: str | None              # file name in the directory, None when there is none
    outcome: Outcome | None
    panic: str
    pstore: tuple[str, ...]         # file names under pstore/

    def result(self) -> str:
        """One line: what happened to this crash's dump."""
        if self.outcome is not None and self.outcome.result:
            return self.outcome.summary()
        if self.vmcore == "vmcore-incomplete":
            return "failed: the vmcore is incomplete"
        if self.vmcore is not None:
            return f"saved ({self.vmcore}; no outcome record)"
        if self.pstore:
            return "no dump: only pstore records"
        return "no dump"

    def as_json(self) -> dict[str, object]:
        return {"directory": str(self.directory), "time": self.time.isoformat(),
                "result": self.result(),
                "vmcore": str(self.directory / self.vmcore) if self.vmcore else None,
                "panic": self.panic or None, "pstore": list(self.pstore),
                "outcome": self.outcome.as_json() if self.outcome is not None else None}


def dir_time(name: str) -> datetime | None:
    m = DIR_NAME.match(name)
    if m is None:
        return None
    try:
        return datetime.strptime(m.group("date"), DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def dir_name(host_name: str, when: datetime) -> str:
    return f"{host_name}-{when.astimezone(UTC).strftime(DATE_FORMAT)}"


def panic_line(text: str) -> str:
    """The line saying why the kernel died, without its log head; "" when none does."""
    lines = [_LOG_HEAD.sub("", line, count=1).strip() for line in text.splitlines()]
    for pattern in _PANIC:
        for line in lines:
            m = pattern.search(line)
            if m:
                return m.group(0)[:512]
    return ""


def _read_text(host: Host, path: PurePosixPath) -> str:
    try:
        return read_input(host.path(path), DMESG_MAX).decode("utf-8", "replace")
    except InputFileError:
        return ""


def read_crash(host: Host, directory: PurePosixPath) -> Crash | None:
    when = dir_time(directory.name)
    if when is None or not host.is_dir(directory) or host.is_symlink(directory):
        return None
    names = set(host.listdir(directory))
    pstore_dir = directory / PSTORE_SUBDIR
    pstore = tuple(sorted(host.listdir(pstore_dir))) \
        if PSTORE_SUBDIR in names and host.is_dir(pstore_dir) else ()
    outcome: Outcome | None = None
    if OUTCOME_FILE in names:
        try:
            outcome = read_outcome(host.path(directory / OUTCOME_FILE))
        except InputFileError:
            outcome = None
    if outcome is None:
        # The pstore record of the capture kernel's log (a failed dump has no directory of
        # its own, so its record only reaches one through `mkkdumprd pstore`).
        for name in pstore:
            try:
                found = read_outcome(host.path(pstore_dir / name))
            except InputFileError:
                continue
            if found is not None:
                outcome = found
    vmcore = next((n for n in VMCORE_NAMES if n in names), None)
    panic = panic_line(_read_text(host, directory / "vmcore-dmesg.txt")) \
        if "vmcore-dmesg.txt" in names else ""
    for name in pstore:
        if panic:
            break
        if name.startswith("dmesg-"):
            panic = panic_line(_read_text(host, pstore_dir / name))
    return Crash(directory, when, vmcore, outcome, panic, pstore)


def list_crashes(host: Host, roots: list[PurePosixPath]) -> list[Crash]:
    """Every crash directory under `roots`, newest first."""
    found: list[Crash] = []
    for root in roots:
        if not host.is_dir(root):
            continue
        for name in host.listdir(root):
            crash = read_crash(host, root / name)
            if crash is not None:
                found.append(crash)
    found.sort(key=lambda c: (c.time, str(c.directory)), reverse=True)
    return found
