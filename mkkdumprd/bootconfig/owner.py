"""A named set of kernel command line words that one mkkdumprd command writes (the owner of
those words in the boot configuration), and how its words are told apart from the rest.

An owner's domain is the words its regex finds at a word start. A domain word that is not
in the set being written and not in the set the owner last wrote (its record) was set by
hand: the writer leaves it and the whole change alone unless forced. Words of a `shared`
name (memmap=: several regions, each a word of its own, some of them the administrator's)
belong to the owner only when it wrote them; the others are neither replaced nor hand-set.
`conflicts` says why the kernel would not read the set as written on a command line (the
kernel takes the last value of a parameter; crashkernel= is found even inside other words).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Owner:
    label: str                      # the words in messages: "crashkernel=", "ramoops"
    command: str                    # the command that writes them, for file headers
    word: re.Pattern[str]           # a domain word, at a word start
    record: PurePosixPath           # what it last wrote (state directory)
    grub_cfg: PurePosixPath         # its /etc/default/grub.d drop-in
    token: Callable[[str], str]     # a domain word as recorded ("crashkernel=1G" -> "1G")
    to_word: Callable[[str], str]   # the inverse: a recorded token as the word
    conflicts: Callable[[str, Sequence[str]], list[str]]
    shared: re.Pattern[str] | None = None   # domain words that are ours only when recorded

    def mine(self, token: str, ours: Sequence[str], new: Sequence[str]) -> bool:
        """Whether a domain word (as a token) is one this owner may replace or remove
        without being told: in the new set or in the record."""
        return token in ours or token in new

    def counts(self, token: str, ours: Sequence[str], new: Sequence[str]) -> bool:
        """Whether a domain word takes part at all (a shared name only when it is ours)."""
        return (self.shared is None or not self.shared.match(token)
                or self.mine(token, ours, new))


def key(word: str) -> str:
    """A parameter's name as the kernel compares it ("-" and "_" alike)."""
    return word.split("=", 1)[0].strip('"').replace("-", "_")


def last_wins_conflicts(single: Callable[[str], bool]) -> Callable[[str, Sequence[str]],
                                                                    list[str]]:
    """`conflicts` for parameters the kernel reads once, the last spelling winning (module
    parameters, most `__setup` words): for each word of the set whose name `single` accepts,
    the last word of that name on the command line must be it."""
    def conflicts(cmdline: str, words: Sequence[str]) -> list[str]:
        out: list[str] = []
        on_line = cmdline.split()
        for w in words:
            if not single(w):
                continue
            last = next((x for x in reversed(on_line) if key(x) == key(w)), None)
            if last is not None and last.strip('"') != w.strip('"'):
                out.append(f"the kernel would read '{last}' for {key(w)}, not '{w}'")
        return out
    return conflicts
