"""The capture kernel's command line, built from the running one and the arch lists.

Words are split as the kernel's next_arg() does: on whitespace outside double quotes. A
word is removed when its name (the part before "=") is in the arch's remove list or is set
again by the append list (so nr_cpus=1 replaces the host's nr_cpus=N instead of competing
with it). Everything after a bare "--" is init's, not the kernel's, and is dropped.
`elfcorehdr=` is never passed: the kernel adds it itself for kexec_file_load.
"""

from __future__ import annotations

from collections.abc import Iterable

ALWAYS_REMOVE = ("crashkernel", "elfcorehdr")


def split_words(cmdline: str) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in cmdline:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch.isspace() and not quoted:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def _key(word: str) -> str:
    # The kernel treats "-" and "_" alike in parameter names (parameq()).
    return word.split("=", 1)[0].strip('"').replace("-", "_")


def capture_cmdline(running: str, remove: Iterable[str], append: Iterable[str],
                    extra: Iterable[str] = ()) -> str:
    """The command line for the capture kernel.

    `running` is /proc/cmdline; `remove`/`append` come from the arch data; `extra` are the
    user's additions (--cmdline), appended last and filtered like `append`.
    """
    add = [*append, *extra]
    drop = {_key(w) for w in (*remove, *ALWAYS_REMOVE)} | {_key(w) for w in add}
    kept: list[str] = []
    for word in split_words(running):
        if word == "--":
            break
        if _key(word) in drop:
            continue
        if word.endswith("=") and "=" in word:
            continue        # an empty value means nothing; Fedora drops these too
        kept.append(word)
    never = {_key(w) for w in ALWAYS_REMOVE}
    added: list[str] = []
    for word in add:
        if _key(word) in never:
            continue
        # Within the additions the last spelling of a name wins, as in the kernel.
        added = [w for w in added if _key(w) != _key(word)]
        added.append(word)
    return " ".join([*kept, *added])
