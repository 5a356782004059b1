"""Module names, alias patterns and file suffixes, with kmod's exact rules.

kmod treats `-` and `_` as the same character in module names and aliases (outside
`[...]` brackets of a pattern), and matches alias patterns with fnmatch(3) without flags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from mkkdumprd.image.spec import Codec

# Longest suffix first, so "x.ko.xz" is not taken for a plain ".ko".
MODULE_SUFFIXES: tuple[tuple[str, Codec], ...] = (
    (".ko.xz", Codec.XZ),
    (".ko.zst", Codec.ZSTD),
    (".ko.gz", Codec.GZIP),
    (".ko", Codec.NONE),
)
_GLOB_CHARS = re.compile(r"[*?\[\\]")  # a backslash quotes: not literal


def module_suffix(filename: str) -> tuple[str, Codec] | None:
    """The module suffix of a file name and how its content is compressed, or None."""
    for suffix, codec in MODULE_SUFFIXES:
        if filename.endswith(suffix):
            return suffix, codec
    return None


def is_module_file(filename: str) -> bool:
    # ".ko" first: a plain module ends with nothing else (a cold build asks ~4,000 times).
    return filename.endswith(".ko") or module_suffix(filename) is not None


def strip_compression(relpath: str) -> str:
    """`kernel/fs/ext4/ext4.ko.xz` -> `kernel/fs/ext4/ext4.ko` (the name insmod loads)."""
    found = module_suffix(relpath)
    if found is None:
        return relpath
    return relpath[: -len(found[0])] + ".ko"


def modname_from_path(relpath: str) -> str:
    """kmod's module name for a file: basename without suffix, `-` turned into `_`."""
    base = relpath[relpath.rfind("/") + 1:]
    if base.endswith(".ko"):  # the common case, which ends with no other suffix
        base = base[:-3]
    else:
        found = module_suffix(base)
        if found is not None:
            base = base[: -len(found[0])]
    return base.replace("-", "_")


def normalize(name: str) -> str:
    """kmod's alias_normalize(): `-` -> `_` except inside `[...]` brackets."""
    if "[" not in name:
        return name.replace("-", "_")
    out: list[str] = []
    in_bracket = False
    for ch in name:
        if in_bracket:
            out.append(ch)
            if ch == "]":
                in_bracket = False
        elif ch == "[":
            in_bracket = True
            out.append(ch)
        else:
            out.append("_" if ch == "-" else ch)
    return "".join(out)


def literal_prefix(pattern: str) -> str:
    """The part of a glob pattern before its first wildcard (all of it when it has none)."""
    m = _GLOB_CHARS.search(pattern)
    return pattern if m is None else pattern[: m.start()]


def is_glob(pattern: str) -> bool:
    return _GLOB_CHARS.search(pattern) is not None


@lru_cache(maxsize=65536)
def _compile(pattern: str) -> re.Pattern[str]:
    """fnmatch(3) with flags 0: `*` and `?` match any character (including `/`), `[...]`
    and `[!...]` are sets, a backslash quotes the next character."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\":
            if i >= n:
                return re.compile("(?!)")  # glibc: a trailing backslash matches nothing
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            cls, i = _bracket(pattern, i)
            out.append(cls)
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL)


def _bracket(pattern: str, i: int) -> tuple[str, int]:
    """Regex for the bracket expression starting after the `[` at i-1, and where the
    pattern continues. Like glibc: `!`/`^` negate, a `]` first is literal, `\\` quotes,
    a reversed range matches nothing. An unclosed `[` is a literal (POSIX)."""
    n = len(pattern)
    j = i
    neg = j < n and pattern[j] in "!^"
    if neg:
        j += 1
    items: list[str] = []
    first = True
    while True:
        if j >= n:
            return re.escape("["), i
        c = pattern[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        j += 1
        if c == "\\" and j < n:
            c = pattern[j]
            j += 1
        if j + 1 < n and pattern[j] == "-" and pattern[j + 1] != "]":
            hi = pattern[j + 1]
            j += 2
            if hi == "\\" and j < n:
                hi = pattern[j]
                j += 1
            if c <= hi:
                items.append(f"{re.escape(c)}-{re.escape(hi)}")
        else:
            items.append(re.escape(c))
    if not items:
        return ("." if neg else "(?!)"), j
    return ("[^" if neg else "[") + "".join(items) + "]", j


def fnmatch(pattern: str, name: str) -> bool:
    if not is_glob(pattern):
        return pattern == name
    return _compile(pattern).fullmatch(name) is not None


@dataclass
class AliasTable:
    """Alias patterns -> module names, in insertion order, found by their literal prefix.

    A query only tries the patterns whose literal prefix is a prefix of it, so a lookup
    costs len(query) dict probes plus a few fnmatch calls, not one per alias (~26,000
    aliases in a distribution kernel).
    """

    _by_prefix: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    _count: int = 0

    def add(self, pattern: str, modname: str) -> None:
        pattern = normalize(pattern)
        self._by_prefix.setdefault(literal_prefix(pattern), []).append(
            (self._count, pattern, modname))
        self._count += 1

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for pattern, modname in pairs:
            self.add(pattern, modname)

    def __len__(self) -> int:
        return self._count

    def match(self, key: str) -> list[str]:
        """Module names whose pattern matches the normalized `key`, in insertion order,
        without repeats."""
        hits: list[tuple[int, str]] = []
        get = self._by_prefix.get
        for k in range(len(key) + 1):
            bucket = get(key[:k])
            if bucket is None:
                continue
            for seq, pattern, modname in bucket:
                if fnmatch(pattern, key):
                    hits.append((seq, modname))
        hits.sort()
        return list(_unique(m for _, m in hits))

    def items(self) -> Iterator[tuple[str, str]]:
        rows = sorted(r for bucket in self._by_prefix.values() for r in bucket)
        for _, pattern, modname in rows:
            yield pattern, modname


def _unique(items: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for x in items:
        if x not in seen:
            seen.add(x)
            yield x
