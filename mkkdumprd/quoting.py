"""Quoting a value for a file another program interprets: one helper per format.

- `shell_word`: one POSIX sh word (the templates' `shq` filter, hooks.conf).
- `systemd_exec_word`: one word of a systemd `Exec*=` command line (systemd.service(5),
  "Command lines"; systemd.syntax(7)): quoted, with C escapes for `\\` and `"`, `%%` for a
  literal `%` (specifiers), and in arguments `$$` for a literal `$` (environment
  expansion, which systemd does not apply to the executable's path: there `$` stays).
  systemd refuses an executable path with `\\`, `"` or `'` in it ("Executable name contains
  special characters"), so such a path is refused here with a sentence instead.
- kdump.conf values: config/syntax.py, beside the parser whose reading it inverts.
- `kernel_word`: one kernel command line word (/etc/kernel/cmdline, BLS `options`). The
  kernel splits words as next_arg() does, on whitespace outside double quotes, and removes
  the quotes around a value; there is no escape character, so a value can carry spaces
  only inside "...", never a quote, and no control character is meaningful.
- `grub_append_line`: a line of a grub defaults file (/etc/default/grub, grub.d/*.cfg),
  sourced by /bin/sh (grub-mkconfig); the variables then land unescaped in grub.cfg, whose
  script language gives meaning to $ ; & | < > { } ' " \\ and whitespace. So a word added
  there must be a kernel word made only of characters no shell and no grub script treats
  specially; it goes inside double quotes (escaped for them anyway) after the old value.
  The one exception is `$` (memmap=SIZE$ADDR): escaped for grub.cfg as `\\$`, then for sh.
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


_GRUB_SAFE = re.compile(r"[A-Za-z0-9_.,:@=/+%~^-]+")
_VAR = re.compile(r"[A-Z_][A-Z0-9_]*")


class FormatError(UsageError):
    """A value cannot be written in that format; the message says why."""


def _show(text: str) -> str:
    from mkkdumprd.input_file import printable

    return printable(text)


def kernel_word(word: str) -> str:
    """`word` as one kernel command line word: a value with spaces is put in double
    quotes (name="a b"); control characters, and quotes or spaces anywhere else, are
    refused."""
    if not word:
        raise FormatError("an empty kernel command line word")
    for ch in word:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise FormatError(f"{_show(word)}: control character '{_show(ch)}' cannot be "
                              "on the kernel command line")
    name, eq, value = word.partition("=")
    if not name or '"' in name or " " in name:
        raise FormatError(f"{_show(word)}: a parameter name must be non-empty, without "
                          "spaces or quotes")
    if eq and len(value) >= 2 and value[0] == value[-1] == '"' and '"' not in value[1:-1]:
        return word                              # name="already quoted"
    if '"' in value:
        raise FormatError(f"{_show(word)}: a double quote cannot be part of a kernel "
                          "command line value (the kernel has no escape for it)")
    if " " in value:
        return f'{name}="{value}"'
    return word


def sh_double_quoted(text: str) -> str:
    """`text` escaped for the inside of a POSIX sh double-quoted string."""
    return re.sub(r'([\\$`"])', r"\\\1", text)


def grub_append_line(var: str, word: str) -> str:
    """`VAR="$VAR word"` for a grub defaults file; `word` must be grub- and shell-safe,
    except for `$` (memmap=SIZE$ADDR), which is escaped for both: grub.cfg gets `\\$`,
    which its script language reads as a literal `$`, so the file holds `\\\\\\$`."""
    if not _VAR.fullmatch(var):
        raise FormatError(f"{_show(var)} is not a grub defaults variable name")
    word = kernel_word(word)
    if not _GRUB_SAFE.fullmatch(word.replace("$", "_")):
        bad = next(ch for ch in word if ch != "$" and not _GRUB_SAFE.fullmatch(ch))
        raise FormatError(f"{_show(word)}: '{_show(bad)}' is not written into a grub defaults "
                          "file (the shell and grub.cfg's script language would interpret it)")
    return f'{var}="${var} {sh_double_quoted(word.replace("$", chr(92) + "$"))}"\n'
