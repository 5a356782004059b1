"""Where the administrator sets the capture kernel's command line, and how they combine.

Three files are read (through the Host, never sourced: loader/shell_vars.py), in this order:

| file | base (replaces /proc/cmdline) | remove (names) | append |
|---|---|---|---|
| /etc/default/kdump-tools (Debian) | KDUMP_CMDLINE | - | KDUMP_CMDLINE_APPEND |
| /etc/sysconfig/kdump (Fedora) | KDUMP_COMMANDLINE | ..._REMOVE | KDUMP_COMMANDLINE_APPEND |
| /etc/mkkdumprd/cmdline.conf (ours) | CMDLINE | CMDLINE_REMOVE | CMDLINE_APPEND |

Precedence, lowest first: /proc/cmdline < Debian < Fedora < ours < `load --cmdline` for
the base (the last one set wins; an empty value is unset, as in both tools); the removes
add up; the appends come after the arch list (data/arch/*.toml, still the defaults) in
the table's order, then `load --append`, and a later spelling of a name replaces an
earlier one. A REMOVE name also drops the arch default of that name (so `irqpoll` can be
turned off), never a word appended by a file or --append. crashkernel= and elfcorehdr=
are always dropped (loader/cmdline.py). Every word passes quoting.kernel_word.

Differences from the tools that own these files: kdump-tools passes KDUMP_CMDLINE
verbatim and its KDUMP_CMDLINE_APPEND replaces its defaults; here every base is filtered
like /proc/cmdline (root=, crashkernel= ... go) and appends add to the arch defaults (a
name set again replaces the default's word). kdump-tools' `systemd.unit=...` word is
harmless: the capture image's /init is not systemd.

KEXEC_ARGS / KDUMP_KEXEC_ARGS: mkkdumprd always loads with kexec_file_load, which is what
`-s`/`--kexec-file-syscall` ask for; any other word is reported as not applied.

Standard library only: the loader imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.errors import ConfigError
from mkkdumprd.host import Host
from mkkdumprd.loader import shell_vars
from mkkdumprd.loader.cmdline import Word, compose, split_words
from mkkdumprd.quoting import FormatError, kernel_word

DEBIAN = PurePosixPath("/etc/default/kdump-tools")
FEDORA = PurePosixPath("/etc/sysconfig/kdump")
OWN = PurePosixPath("/etc/mkkdumprd/cmdline.conf")

# (file, {variable: role}); roles: base, remove, append, kexec.
SOURCES: tuple[tuple[PurePosixPath, dict[str, str]], ...] = (
    (DEBIAN, {"KDUMP_CMDLINE": "base", "KDUMP_CMDLINE_APPEND": "append",
              "KDUMP_KEXEC_ARGS": "kexec"}),
    (FEDORA, {"KDUMP_COMMANDLINE": "base", "KDUMP_COMMANDLINE_REMOVE": "remove",
              "KDUMP_COMMANDLINE_APPEND": "append", "KEXEC_ARGS": "kexec"}),
    (OWN, {"CMDLINE": "base", "CMDLINE_REMOVE": "remove", "CMDLINE_APPEND": "append"}),
)
KEXEC_FILE_WORDS = ("-s", "--kexec-file-syscall")
# The origin of the arch file's words ("x86_64 default (data/arch/x86_64.toml)").
ARCH_DEFAULT = "default (data/arch/"


@dataclass(frozen=True)
class CmdlineSettings:
    base: tuple[Word, ...] | None = None     # None: /proc/cmdline
    remove: tuple[Word, ...] = ()             # names (the text before "=")
    append: tuple[Word, ...] = ()
    notes: tuple[str, ...] = ()               # what was read but not applied


def _words(a: shell_vars.Assignment, name: str) -> list[Word]:
    origin = f"{a.where} {name}"
    out: list[Word] = []
    for text in split_words(a.value):
        try:
            out.append(Word(kernel_word(text), origin))
        except FormatError as exc:
            raise ConfigError([(a.where, f"{name}: {exc}")]) from None
    return out


def read_settings(host: Host) -> CmdlineSettings:
    base: tuple[Word, ...] | None = None
    remove: list[Word] = []
    append: list[Word] = []
    notes: list[str] = []
    for path, roles in SOURCES:
        if not host.is_file(path):
            continue
        found = shell_vars.read(str(host.real(path)), str(path))
        for name, role in roles.items():
            a = found.get(name)
            if a is None or not a.value.strip():
                continue
            if role == "kexec":
                other = [w for w in a.value.split() if w not in KEXEC_FILE_WORDS]
                if other:
                    notes.append(f"{a.where}: {name}: {' '.join(other)} not applied "
                                 "(mkkdumprd loads with kexec_file_load itself)")
                continue
            words = _words(a, name)
            if role == "base":
                base = tuple(words)
            elif role == "remove":
                remove.extend(words)
            else:
                append.extend(words)
    return CmdlineSettings(base, tuple(remove), tuple(append), tuple(notes))


def is_arch_default(word: Word) -> bool:
    """The word is the arch file's default (not set by the administrator)."""
    return ARCH_DEFAULT in word.origin


def capture_words(proc_cmdline: str, arch_name: str, arch_remove: Sequence[str],
                  arch_append: Sequence[str], settings: CmdlineSettings,
                  cmdline: str | None = None, extra: Sequence[str] = ()) -> list[Word]:
    """The capture command line, each word with its origin (see the module doc)."""
    if cmdline is not None:
        base = [Word(w, "--cmdline") for w in split_words(cmdline)]
    elif settings.base is not None:
        base = list(settings.base)
    else:
        base = [Word(w, "/proc/cmdline") for w in split_words(proc_cmdline)]
    user_drop = {w.text.split("=", 1)[0].replace("-", "_") for w in settings.remove}
    defaults = [Word(w, f"{arch_name} {ARCH_DEFAULT}{arch_name}.toml)")
                for w in arch_append
                if w.split("=", 1)[0].replace("-", "_") not in user_drop]
    added = [*defaults, *settings.append, *(Word(kernel_word(w), "--append") for w in extra)]
    return compose(base, [*arch_remove, *(w.text for w in settings.remove)], added)
