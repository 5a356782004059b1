"""The capture kernel's command line, built from the running one and the arch lists.

Words are split as the kernel's next_arg() does: on whitespace outside double quotes. A
word is removed when its name (the part before "=") is in the arch's remove list or is set
again by the append list (so nr_cpus=1 replaces the host's nr_cpus=N instead of competing
with it). Everything after a bare "--" is init's, not the kernel's, and is dropped.
`elfcorehdr=` is never passed: the kernel adds it itself for kexec_file_load.
A running `memmap=` word keeps only its reserving items (`SIZE$ADDR`: a ramoops region
stays out of the capture kernel's RAM, as `pstore setup` writes it); the others describe
the first kernel's RAM (`@` adds RAM, a bare size limits it, `exactmap` replaces the map,
`!`/`#`/`%` retype ranges), which in the capture kernel would hand it memory the dump must
read, or take away the only RAM it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ALWAYS_REMOVE = ("crashkernel", "elfcorehdr")
# One memmap= item that reserves a range (parse_memmap_one(): memparse, then '$').
_MEMMAP_RESERVE = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]+)[KMGTPEkmgtpe]?\$\S+")


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


def capture_memmap(word: str) -> str | None:
    """A running memmap= word as the capture kernel gets it: only its `SIZE$ADDR` items,
    None when none is left."""
    items = [i for i in word.split("=", 1)[1].split(",") if _MEMMAP_RESERVE.fullmatch(i)]
    return f"memmap={','.join(items)}" if items else None


@dataclass(frozen=True)
class Word:
    """One capture command line word and where it came from (for --dry-run and status)."""

    text: str
    origin: str


def compose(running: Iterable[Word], remove: Iterable[str], append: Iterable[Word]) -> list[Word]:
    """The capture command line as words with their origins.

    `running` is the base (/proc/cmdline or a configured replacement), `remove` the names
    to drop from it, `append` the additions in order (a later spelling of a name wins).
    """
    add = list(append)
    drop = {_key(w) for w in (*remove, *ALWAYS_REMOVE)} | {_key(w.text) for w in add}
    kept: list[Word] = []
    for word in running:
        if word.text == "--":
            break
        if _key(word.text) in drop:
            continue
        if word.text.endswith("="):
            continue        # an empty value means nothing; Fedora drops these too
        if _key(word.text) == "memmap":
            text = capture_memmap(word.text)
            if text is None:
                continue
            word = Word(text, word.origin)
        kept.append(word)
    never = {_key(w) for w in ALWAYS_REMOVE}
    added: list[Word] = []
    for word in add:
        if _key(word.text) in never:
            continue
        # Within the additions the last spelling of a name wins, as in the kernel.
        added = [w for w in added if _key(w.text) != _key(word.text)]
        added.append(word)
    return [*kept, *added]


def capture_cmdline(running: str, remove: Iterable[str], append: Iterable[str],
                    extra: Iterable[str] = ()) -> str:
    """The command line for the capture kernel.

    `running` is /proc/cmdline; `remove`/`append` come from the arch data; `extra` are the
    user's additions (--cmdline), appended last and filtered like `append`.
    """
    words = compose([Word(w, "") for w in split_words(running)], remove,
                    [Word(w, "") for w in (*append, *extra)])
    return " ".join(w.text for w in words)
