"""Quoting a value for a file another program interprets: one helper per format.

- `shell_word`: one POSIX sh word (the templates' `shq` filter, hooks.conf).
- `systemd_exec_word`: one word of a systemd `Exec*=` command line (systemd.service(5),
  "Command lines"; systemd.syntax(7)): quoted, with C escapes for `\\` and `"`, `%%` for a
  literal `%` (specifiers), and in arguments `$$` for a literal `$` (environment
  expansion, which systemd does not apply to the executable's path: there `$` stays).
  systemd refuses an executable path with `\\`, `"` or `'` in it ("Executable name contains
  special characters"), so such a path is refused here with a sentence instead.
- kdump.conf values: config/syntax.py, beside the parser whose reading it inverts.
Values that no quoting makes safe (control characters: a newline would start a new
directive in a unit or a new command in a script) are refused by `check_path` first.
"""

from __future__ import annotations

import re
import shlex

from mkkdumprd.errors import UsageError

_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9/._+:@=,-]+")


def shell_word(value: str) -> str:
    """One shell word, whatever `value` holds."""
    return shlex.quote(value)


def systemd_exec_word(value: str, *, executable: bool) -> str:
    """One word of a systemd Exec= line that systemd reads back as `value`; `executable`:
    the command's path (the first word), else an argument."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UsageError(f"{value!r} contains a control character, which a systemd unit "
                         "cannot hold")
    if executable and any(c in value for c in "\\\"'"):
        raise UsageError(f"{value!r} contains a quote or a backslash, which systemd does not "
                         "accept in the path of an executable; install mkkdumprd elsewhere")
    if _SYSTEMD_PLAIN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if not executable:
        escaped = escaped.replace("$", "$$")
    return f'"{escaped}"'


def check_path(value: str, what: str) -> str:
    """An absolute path without control characters (valid UTF-8), else a UsageError."""
    if not value.startswith("/") or value.endswith("/"):
        raise UsageError(f"{what} {value!r} must be an absolute path of a file")
    bad = next((c for c in value if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise UsageError(f"{what} {value!r} contains the control character {bad!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} {value!r} is not valid UTF-8") from None
    return value
