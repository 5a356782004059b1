r"""Variable assignments from a shell-sourced settings file, read without running it.

/etc/sysconfig/kdump and /etc/default/kdump-tools are sourced by their own tools. We never
run them: each line must be blank, a `#` comment or `[export ]NAME=VALUE [# comment]`,
where VALUE is made of unquoted characters, '...' and "..." parts. Anything that needs a
shell to mean something (`$`, backquotes, `;`, `&&`, a line continuation, a multi-line
quote) is a ConfigError naming file:line instead of a guess. In "..." only \\, \", \$ and
\` are escapes, as in sh.

Standard library only: the loader imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mkkdumprd.errors import ConfigError, Location
from mkkdumprd.input_file import read_input_text

_NAME = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")
# What an unquoted word may hold: what sh takes literally and a kernel word needs.
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]")
_DQ_ESCAPES = '\\"$`'


@dataclass(frozen=True)
class Assignment:
    value: str
    where: Location


def _value(text: str, start: int) -> tuple[str, int]:
    """The value beginning at text[start]; returns it and the index after it."""
    out: list[str] = []
    i = start
    while i < len(text) and text[i] not in " \t":
        ch = text[i]
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("unterminated '...' (a value must end on its line)")
            out.append(text[i + 1:end])
            i = end + 1
        elif ch == '"':
            i += 1
            while True:
                if i >= len(text):
                    raise ValueError('unterminated "..." (a value must end on its line)')
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < len(text) and text[i + 1] in _DQ_ESCAPES:
                    out.append(text[i + 1])
                    i += 2
                    continue
                if c in "$`\\":
                    raise ValueError(f"{c!r} inside \"...\" needs a shell to expand it; "
                                     "write the value itself")
                out.append(c)
                i += 1
        elif _PLAIN.match(ch):
            out.append(ch)
            i += 1
        else:
            raise ValueError(f"{ch!r} outside quotes needs a shell; quote the value")
    return "".join(out), i


def parse(text: str, filename: str) -> dict[str, Assignment]:
    """Every assignment in `text`; a later one of the same name wins, as in sh."""
    found: dict[str, Assignment] = {}
    problems: list[tuple[Location | None, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip(" \t")
        if not line or line.startswith("#"):
            continue
        where = Location(filename, n)
        m = _NAME.match(line)
        if m is None:
            problems.append((where, "not a NAME=VALUE assignment; mkkdumprd reads this "
                                    "file without running it as a shell script"))
            continue
        try:
            value, end = _value(line, m.end())
        except ValueError as exc:
            problems.append((where, f"{m.group(1)}: {exc}"))
            continue
        rest = line[end:].lstrip(" \t")
        if rest and not rest.startswith("#"):
            problems.append((where, f"{m.group(1)}: unexpected {rest[:20]!r} after the value "
                                    "(one assignment per line; quote values with spaces)"))
            continue
        found[m.group(1)] = Assignment(value, where)
    if problems:
        raise ConfigError(problems)
    return found


def read(path: str, filename: str) -> dict[str, Assignment]:
    """The assignments of the file at `path` (a real path), named `filename` in errors."""
    return parse(read_input_text(path), filename)
