"""crashkernel= for s390x machines that boot through /etc/zipl.conf (Debian, SUSE, older
RHEL), then `zipl` to write the boot record.

zipl.conf (s390-tools zipl.conf(5)) is an INI-like file: `[defaultboot]`, one `[NAME]`
section per IPL entry with `image=`, `ramdisk=` and `parameters=` (the kernel command line,
usually in double quotes), dump sections (`dumpto=`, no `image=`), and `:menu` sections.
Only sections with an `image=` line are kernel entries: their `parameters=` value gets the
crashkernel= set the way apply.py edits any command line (`_edit_words`: the set where the
first crashkernel= word was, the others removed, the kernel's choice checked), and an entry
without `parameters=` gets one after its `image=` line. Every other byte stays. A
crashkernel= the user set by hand is left alone unless `force`, as in the other backends.
This module only knows the file's shape; apply.py owns the words. The new value takes
effect only once `zipl` has rewritten the boot record: apply.py's `perform` runs it through
the Host's `run` probe on the live root only (tests replace the probe; for another root
the command is printed).

On machines with BLS entries and grubby (RHEL 8+), apply.py's grubby backend edits the
entries and this module only adds the reminder that zipl must run afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath

ZIPL_CONF = PurePosixPath("/etc/zipl.conf")
ZIPL = "zipl"
RUN_ZIPL = "run `zipl` to write the boot record, then reboot"

_SECTION = re.compile(r"^\s*\[([^\]]*)\]")
_MENU = re.compile(r"^\s*:")
_KEY = re.compile(r"^(\s*)([A-Za-z]+)(\s*=\s*)(.*?)(\s*)$")


def _unquote(value: str) -> tuple[str, bool]:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1], True
    return value, False


def _sections(lines: list[str]) -> list[tuple[str, int, int]]:
    """(name, first line, end line) of every `[NAME]` section; a `:menu` line ends one."""
    found: list[tuple[str, int, int]] = []
    name: str | None = None
    start = 0
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m or _MENU.match(line):
            if name is not None:
                found.append((name, start, i))
            name, start = (m.group(1).strip(), i) if m else (None, i)
    if name is not None:
        found.append((name, start, len(lines)))
    return found


def _key(line: str) -> tuple[str, re.Match[str]] | None:
    if line.lstrip().startswith("#"):
        return None
    m = _KEY.match(line.rstrip("\n"))
    return (m.group(2).lower(), m) if m else None


def parameters(text: str) -> list[tuple[str, str]]:
    """(section, parameters value without its quotes) of every kernel entry."""
    lines = text.splitlines(keepends=True)
    out: list[tuple[str, str]] = []
    for name, start, end in _sections(lines):
        keys = {k[0]: k[1] for i in range(start, end) if (k := _key(lines[i]))}
        if "image" in keys and "parameters" in keys:
            out.append((name, _unquote(keys["parameters"].group(4))[0]))
    return out


def edit(text: str, set_words: Callable[[str, str], str]) -> str:
    """zipl.conf with every kernel entry's parameters passed through
    `set_words(parameters, where)` (apply.py puts the crashkernel= set in); an entry
    without `parameters=` gets one after its `image=` line."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    inserts: list[tuple[int, str]] = []
    for name, start, end in _sections(lines):
        keys = {k[0]: (i, k[1]) for i in range(start, end) if (k := _key(lines[i]))}
        if "image" not in keys:
            continue                        # [defaultboot], dump sections
        where = f"{ZIPL_CONF} [{name}]"
        if "parameters" in keys:
            i, m = keys["parameters"]
            new = set_words(_unquote(m.group(4))[0], where).strip()
            lines[i] = f'{m.group(1)}{m.group(2)}{m.group(3)}"{new}"{m.group(5)}\n'
        else:
            i, m = keys["image"]
            new = set_words("", where).strip()
            inserts.append((i + 1, f'{m.group(1)}parameters="{new}"\n'))
    for i, line in sorted(inserts, reverse=True):
        lines.insert(i, line)
    return "".join(lines)


def has_kernel_entries(text: str) -> bool:
    lines = text.splitlines(keepends=True)
    return any(any((k := _key(lines[i])) and k[0] == "image" for i in range(s, e))
               for _n, s, e in _sections(lines))
