"""Values written into boot configuration: one validation and quoting helper per format.

Kernel command line (`kernel_word`): the kernel splits words as next_arg() does, on ASCII
whitespace outside double quotes, and removes the quotes around a value; there is no
escape character, so a word can carry spaces only inside "...", never a quote itself, and
no control character is meaningful. /etc/kernel/cmdline and BLS `options` lines are that
format.

grub defaults (`grub_append_line`): /etc/default/grub and /etc/default/grub.d/*.cfg are
sourced by /bin/sh (grub-mkconfig), and the variables then land unescaped in grub.cfg,
whose own script language gives meaning to $ ; & | < > { } ' " \\ and whitespace. So a
word added there must be a kernel word made only of characters that no shell and no grub
script treats specially; it is then put inside double quotes (escaped for them anyway)
after the variable's old value.

Standard library only.
"""

from __future__ import annotations

import re

# Safe in POSIX sh double quotes, in grub script words and on the kernel command line.
_GRUB_SAFE = re.compile(r"[A-Za-z0-9_.,:@=/+%~^-]+")
_VAR = re.compile(r"[A-Z_][A-Z0-9_]*")


class FormatError(ValueError):
    """The value cannot be written in that format; the message says why."""


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
    """`VAR="$VAR word"` for a grub defaults file; `word` must be grub- and shell-safe."""
    if not _VAR.fullmatch(var):
        raise FormatError(f"{_show(var)} is not a grub defaults variable name")
    word = kernel_word(word)
    if not _GRUB_SAFE.fullmatch(word):
        bad = next(ch for ch in word if not _GRUB_SAFE.fullmatch(ch))
        raise FormatError(f"{_show(word)}: '{_show(bad)}' is not written into a grub defaults "
                          "file (the shell and grub.cfg's script language would interpret it)")
    return f'{var}="${var} {sh_double_quoted(word)}"\n'
