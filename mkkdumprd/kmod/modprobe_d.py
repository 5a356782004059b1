"""modprobe.d(5) configuration that changes which modules a name pulls in.

Only the directives that affect resolution are kept: `alias`, `softdep` and `blacklist`.
`options` and `install`/`remove` commands do not change the set of .ko files to carry.
Files are read like kmod does: `*.conf` from the given directories, sorted by file name
across all of them, a name in an earlier directory hiding the same name in later ones;
`#` comments, backslash-newline continuations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.input_file import read_input_text
from mkkdumprd.kmod.names import normalize

DEFAULT_MODPROBE_D: tuple[str, ...] = (
    "/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d", "/lib/modprobe.d",
)


@dataclass(frozen=True)
class SoftDep:
    """`softdep MODULE pre: A B post: C`; MODULE is an fnmatch pattern."""

    pattern: str
    pre: tuple[str, ...]
    post: tuple[str, ...]


@dataclass(frozen=True)
class ModprobeConfig:
    """The alias, softdep and blacklist lines of modprobe.d that apply to a build."""

    aliases: tuple[tuple[str, str], ...] = ()   # (pattern, module name), file order
    softdeps: tuple[SoftDep, ...] = ()
    blacklist: frozenset[str] = frozenset()


def parse_softdep(pattern: str, value: str) -> SoftDep:
    """kmod's parser: words before the first `pre:`/`post:` are dropped."""
    pre: list[str] = []
    post: list[str] = []
    mode: list[str] | None = None
    for word in value.split():
        if word == "pre:":
            mode = pre
        elif word == "post:":
            mode = post
        elif mode is not None:
            mode.append(word)
    return SoftDep(normalize(pattern), tuple(pre), tuple(post))


def config_files(dirs: Sequence[Path]) -> list[Path]:
    """`*.conf` files of `dirs` (or files given directly), sorted by name, earlier
    directories hiding same-named files of later ones."""
    chosen: dict[str, Path] = {}
    for d in dirs:
        if d.is_file():
            chosen.setdefault(d.name, d)
            continue
        try:
            names = sorted(p.name for p in d.iterdir() if p.name.endswith(".conf"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            chosen.setdefault(name, d / name)
    return [chosen[name] for name in sorted(chosen)]


def _logical_lines(text: str) -> Iterable[list[str]]:
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line, pending = pending + raw, ""
        words = line.split()
        if words and not words[0].startswith("#"):
            yield words
    if pending.split():
        yield pending.split()


def parse_modprobe_text(text: str) -> ModprobeConfig:
    aliases: list[tuple[str, str]] = []
    softdeps: list[SoftDep] = []
    blacklist: set[str] = set()
    for words in _logical_lines(text):
        cmd = words[0]
        if cmd == "alias" and len(words) >= 3:
            aliases.append((normalize(words[1]), normalize(words[2])))
        elif cmd == "softdep" and len(words) >= 2:
            softdeps.append(parse_softdep(words[1], " ".join(words[2:])))
        elif cmd == "blacklist" and len(words) >= 2:
            blacklist.add(normalize(words[1]))
    return ModprobeConfig(tuple(aliases), tuple(softdeps), frozenset(blacklist))


def load_modprobe_d(dirs: Sequence[Path]) -> ModprobeConfig:
    aliases: list[tuple[str, str]] = []
    softdeps: list[SoftDep] = []
    blacklist: set[str] = set()
    for path in config_files(dirs):
        try:
            text = read_input_text(path, errors="replace")
        except OSError:
            continue  # kmod skips unreadable files too
        part = parse_modprobe_text(text)
        aliases.extend(part.aliases)
        softdeps.extend(part.softdeps)
        blacklist |= part.blacklist
    return ModprobeConfig(tuple(aliases), tuple(softdeps), frozenset(blacklist))
