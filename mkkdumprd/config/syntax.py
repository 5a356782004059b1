"""kdump.conf's quoting rules, read and written in one place.

Reading is Fedora's: a value wrapped in double quotes loses them (nothing else is unescaped),
and the word-list directives (`core_collector`, `extra_bins`, `extra_modules`,
`dracut_args`) split that value like shell words (quotes group, a backslash escapes). A
`#` always starts a comment and a line cannot hold a control character, so no value can
hold either.

Writing is the inverse, so that every text mkkdumprd writes in kdump.conf syntax (`config
show`, the image's /etc/kdump.conf) parses back to the same values: a single value gets
double quotes exactly when the reader would otherwise change it, and a word list is joined
with shell quoting (shlex.join never yields a text that starts and ends with '"', which
the reader would strip).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from mkkdumprd.config.values import bad_char
from mkkdumprd.errors import UsageError

BLANKS = " \t"


def unquote_value(value: str) -> str:
    """The value as the directive sees it: one pair of surrounding double quotes removed."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def split_words(value: str) -> list[str]:
    """A word-list value split like shell words; ValueError on an unbalanced quote."""
    return shlex.split(value)


def _check_writable(value: str) -> None:
    if "#" in value or bad_char(value):
        raise UsageError(f"the value {value!r} cannot be written in kdump.conf syntax "
                         "('#' and control characters have no escape there)")


def quote_value(value: str) -> str:
    """`value` as kdump.conf text that reads back as exactly `value`."""
    _check_writable(value)
    if value.strip(BLANKS) != value or unquote_value(value) != value:
        return f'"{value}"'
    return value


def quote_words(words: Iterable[str]) -> str:
    """Words as kdump.conf text that `split_words` reads back as exactly these words."""
    words = list(words)
    for word in words:
        _check_writable(word)
    return shlex.join(words)
