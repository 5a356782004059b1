"""The outcome record of one dump, as the capture image writes it (modules.d/outcome).

The record is lines `kdump-outcome: key=value`, in `kdump-outcome.txt` in the dump
directory, in the kernel log (where ramoops keeps it: a dmesg-ramoops-N file, whose lines
carry a `<6>[ 1.234]` head before the prefix) and in pmsg. The reader takes the last record
of a text (a record starts at `version=`), ignores unknown keys, and is bounded: at most
MAX_LINES record lines, MAX_VALUE characters per value, MAX_TARGETS targets. The same text
always parses to the same Outcome, whatever bytes it holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mkkdumprd.input_file import read_input

OUTCOME_FILE = "kdump-outcome.txt"
PREFIX = "kdump-outcome:"
RESULTS = ("saved", "failed", "skipped")
MAX_LINES = 512
MAX_VALUE = 1024
MAX_TARGETS = 16
MAX_CONSOLE = 16
MAX_RECORD_BYTES = 1 << 20

_TARGET_KEY = re.compile(r"target\.([0-9]{1,3})(?:\.(result|detail))?\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TargetAttempt:
    """One target's line of a dump's outcome record."""

    target: str
    result: str            # saved | failed | skipped | "" when the record lost it
    detail: str            # where it was saved, or why not


@dataclass(frozen=True)
class Outcome:
    """A dump's outcome record as the capture kernel wrote it."""

    result: str            # saved | failed | skipped | "" (the record was cut before it)
    reason: str = ""
    started: str = ""      # the capture kernel's clock, ISO 8601 UTC
    finished: str = ""
    duration: int | None = None
    kernel: str = ""
    targets: tuple[TargetAttempt, ...] = ()
    console: tuple[str, ...] = field(default=(), repr=False)
    complete: bool = False  # the record's `end` line was read

    def summary(self) -> str:
        """One line: `saved to X`, `failed: reason`, `skipped: reason`."""
        if self.result == "saved":
            where = next((t.detail for t in self.targets if t.result == "saved"), "")
            return f"saved to {where}" if where else "saved"
        if self.result in ("failed", "skipped"):
            return f"{self.result}: {self.reason}" if self.reason else self.result
        return "unknown (the record is incomplete)"

    def as_json(self) -> dict[str, object]:
        return {"result": self.result, "reason": self.reason, "started": self.started,
                "finished": self.finished, "duration": self.duration, "kernel": self.kernel,
                "targets": [{"target": t.target, "result": t.result, "detail": t.detail}
                            for t in self.targets],
                "console": list(self.console), "complete": self.complete}


@dataclass(frozen=True)
class OutcomeSettings:
    """What the capture script (templates/outcome.sh.j2) is told, as `outcome.<field>`."""
    file: str             # the record's name in the dump directory
    prefix: str           # every record line starts with it (also in the kernel log)
    ramoops_ko: str       # the ramoops module in the image, "" when the image has none


def _record_lines(text: str) -> list[str]:
    """The `key=value` parts of the last record in `text` (bounded)."""
    found: list[str] = []
    for line in text.splitlines():
        at = line.find(PREFIX)
        if at < 0:
            continue
        body = line[at + len(PREFIX):].strip()
        if body.startswith("version="):
            found = []                 # a newer record starts: keep only the last one
        if len(found) < MAX_LINES:
            found.append(body)
    return found


def _clean(value: str) -> str:
    return _CONTROL.sub(" ", value)[:MAX_VALUE]


def parse_outcome(text: str) -> Outcome | None:
    """The last outcome record in `text`, or None when it holds none."""
    lines = _record_lines(text)
    if not lines:
        return None
    values: dict[str, str] = {}
    targets: dict[int, dict[str, str]] = {}
    console: list[str] = []
    complete = False
    for body in lines:
        if body == "end":
            complete = True
            continue
        key, sep, value = body.partition("=")
        if not sep:
            continue
        value = _clean(value)
        m = _TARGET_KEY.match(key)
        if m:
            n = int(m.group(1))
            if n in targets or len(targets) < MAX_TARGETS:
                targets.setdefault(n, {})[m.group(2) or "target"] = value
        elif key == "console":
            console.append(value)
        elif key in ("result", "reason", "started", "finished", "duration", "kernel"):
            values[key] = value
    duration_text = values.get("duration", "")
    duration = int(duration_text) if (duration_text.isascii() and duration_text.isdigit()
                                      and len(duration_text) < 10) \
        else None
    result = values.get("result", "")
    return Outcome(
        result=result if result in RESULTS else "",
        reason=values.get("reason", ""), started=values.get("started", ""),
        finished=values.get("finished", ""), duration=duration,
        kernel=values.get("kernel", ""),
        targets=tuple(TargetAttempt(t.get("target", ""),
                                    r if (r := t.get("result", "")) in RESULTS else "",
                                    t.get("detail", ""))
                      for _, t in sorted(targets.items())),
        console=tuple(console[-MAX_CONSOLE:]), complete=complete)


def read_outcome(path: Path) -> Outcome | None:
    """The record in a file (a dump directory's record, a pstore file); None when it holds
    none. An unreadable or oversized file raises InputFileError (an OSError)."""
    return parse_outcome(read_input(path, MAX_RECORD_BYTES).decode("utf-8", "replace"))
