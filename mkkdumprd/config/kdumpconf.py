"""kdump.conf in Fedora's syntax, read with kdumpctl's strictness.

Line handling is Fedora's (`kdump_read_conf`): blank lines and everything from `#` on are
dropped (a `#` starts a comment even inside a value), surrounding blanks go, the first word
is the directive and the rest its value, and a value wrapped in double quotes loses them.
Acceptance is kdumpctl's (`parse_config`): unknown, duplicated, empty and deprecated
directives and a second dump target are errors. Checks that Fedora only makes when it builds
the initrd but that need no host (makedumpfile without -F on raw/ssh, action names, absolute
paths) are made here too, so `mkkdumprd config check` catches them.

Which directives exist and how each value is read is config/directives.py (one row per
directive); this module reads the lines, dispatches each to its row, refuses duplicates and
settles what depends on the target (`derive`). The quoting rules are config/syntax.py.

Every error is collected (never only the first), each with file:line, the offending text and
what would be valid. Parsing never raises on bad input. Values are carried verbatim: nothing
here or downstream evaluates them (the templates shell-quote every value).

Choices where Fedora has no answer or mkkdumprd differs:
- `minix` and `virtiofs` targets are errors (not supported);
- of `dracut_args` only `--add-drivers`/`--omit-drivers` and `--mount` (a dump target, by
  Fedora's rules: config/dracut_mount.py) count; every other flag is ignored with a
  warning, since no dracut runs;
- `fence_kdump_args` is checked against fence_kdump_send's options (config/fence_kdump.py)
  and warned about without `fence_kdump_nodes`, which it needs;
- `core_collector`, `extra_bins`, `extra_modules` and `dracut_args` are split like shell
  words (quotes group, unbalanced quotes are an error).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mkkdumprd.config import values
from mkkdumprd.config.directives import BY_KEY, BY_SPELLING, SPELLINGS
from mkkdumprd.config.model import (
    DEFAULT_COLLECTOR,
    DEFAULT_PATH,
    DEFAULT_SSHKEY,
    LOCAL_FSTYPES,
    Diagnostic,
    DumpPolicy,
    KdumpConfig,
    Target,
    TargetKind,
)
from mkkdumprd.config.syntax import unquote_value
from mkkdumprd.errors import ConfigError, Location
from mkkdumprd.input_file import read_input

DEFAULT_CONF = Path("/etc/kdump.conf")


@dataclass(frozen=True)
class ParseResult:
    """A kdump.conf read: the configuration (None when an error stops it) and diagnostics."""

    config: KdumpConfig | None
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]

    @property
    def valid(self) -> bool:
        return not self.errors


DEPRECATED = {
    "net": "write the target as `nfs HOST:/EXPORT` or `ssh USER@HOST`",
    "options": "pass module options as MODULE.PARAM=VALUE on the capture kernel's command line",
    "link_delay": "remove it: the capture image waits for the network itself",
    "disk_timeout": "remove it: the capture image waits for the target device itself",
    "debug_mem_level": "remove it",
    "blacklist": 'use `dracut_args --omit-drivers "MODULE"`',
}

UNSUPPORTED_TARGETS = ("minix", "virtiofs")

# Every word that starts a directive's line (config/directives.py holds them).
KNOWN = SPELLINGS

_BLANKS = " \t\r\f\v"
_SPLIT = re.compile(r"([^ \t]+)[ \t]*(.*)", re.S)
# makedumpfile's short options that take an argument (its getopt string is
# "b:cDd:eEFfg:hi:lL:pRvXx:z"): an F after one of them in a cluster is that argument.
_MAKEDUMPFILE_ARG_LETTERS = frozenset("bdgiLx")


def parse_kdump_conf(text: str, source: str = "kdump.conf") -> ParseResult:
    """Parse kdump.conf text; every problem is in the result, nothing is raised.

    Text decoded with errors="surrogateescape" may carry invalid UTF-8: such lines are
    errors, as are lines with a NUL byte or a control character in their directive part.
    """
    parser = _Parser(source)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        parser.feed(number, line)
    return parser.result()


def parse_kdump_conf_bytes(data: bytes, source: str = "kdump.conf") -> ParseResult:
    return parse_kdump_conf(data.decode("utf-8", "surrogateescape"), source)


def read_kdump_conf(path: Path | None, default: Path = DEFAULT_CONF) -> ParseResult:
    """Read and parse `path`; None means `default` if it exists, else Fedora's defaults."""
    if path is None:
        if not default.exists():
            return ParseResult(KdumpConfig(), (), ())
        path = default
    try:
        data = read_input(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        shown = values.printable(str(path))
        msg = f"cannot read {shown}: {reason}; give an existing kdump.conf with -c FILE"
        return ParseResult(None, (Diagnostic(None, msg, shown),), ())
    return parse_kdump_conf_bytes(data, values.printable(str(path)))


def load_kdump_conf(path: Path | None, default: Path = DEFAULT_CONF) -> KdumpConfig:
    """The validated config; raises ConfigError listing every error. Prints nothing."""
    result = read_kdump_conf(path, default)
    if result.config is None:
        raise ConfigError([(d.where, d.message) for d in result.errors])
    return result.config


def derive(config: KdumpConfig) -> tuple[KdumpConfig, list[Diagnostic], list[Diagnostic]]:
    """Settle what depends on the target: the effective collector and the target checks.

    Used after parsing and again when `--target` replaces the file's target. Returns the
    config with `core_collector` set, and the errors and warnings of these checks (which
    are not added to config.warnings here).
    """
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    targets = config.targets
    # The first streamed target (raw, ssh) and the first filesystem target, if any.
    streamed = next((t for t in targets if t.kind in (TargetKind.RAW, TargetKind.SSH)), None)
    target = config.target
    written = config.core_collector_written
    where = config.location("core_collector")
    argv: tuple[str, ...]
    if written is None:
        # -F as soon as one target is streamed: a filesystem target's collector drops it
        # (assemble/builder.collector_argv), and `config show` writes this argv back as a
        # line that must parse again.
        argv = (DEFAULT_COLLECTOR[0], "-F", *DEFAULT_COLLECTOR[1:]) \
            if streamed is not None else DEFAULT_COLLECTOR
    else:
        argv = written
        shown = shlex.join(written)
        if _is_makedumpfile(argv):
            if streamed is not None and not _has_flat_flag(argv):
                errors.append(Diagnostic(
                    where,
                    f"core_collector {shown!r} lacks -F, which the {streamed.kind.value} "
                    f"target ({streamed.describe()}) needs because the dump is streamed; add "
                    "it, e.g. `core_collector makedumpfile -F -l --message-level 7 -d 31`",
                    shown))
            elif streamed is None and "-F" in argv:
                argv = tuple(a for a in argv if a != "-F")
                warnings.append(Diagnostic(
                    where,
                    f"-F in core_collector {shown!r} is dropped for the filesystem target "
                    f"({target.describe()}), as Fedora does, so the vmcore is not flattened",
                    shown))
        if not _is_makedumpfile(argv) and any(t.kind is TargetKind.RAW for t in targets):
            warnings.append(Diagnostic(
                where,
                f"core_collector {shown!r} is not makedumpfile, so `mkkdumprd savecore` "
                "cannot recover the dump from the raw device; you will have to recover it "
                "manually",
                shown))
        if not _is_makedumpfile(argv):
            # makedumpfile drops PG_hwpoison pages whatever -d says (exclude_unnecessary_
            # pages, since 2012); a plain copy of /proc/vmcore reads them and a machine
            # check in the capture kernel ends the dump.
            warnings.append(Diagnostic(
                where,
                f"core_collector {shown!r} copies every page of /proc/vmcore, including "
                "pages the crashed kernel marked hardware-poisoned (memory errors); reading "
                "one can stop the capture kernel with a machine check. makedumpfile skips "
                "them: prefer `core_collector makedumpfile -l --message-level 7 -d 31`",
                shown))
    if config.sshkey != DEFAULT_SSHKEY and not any(t.kind is TargetKind.SSH for t in targets):
        warnings.append(Diagnostic(
            config.location("sshkey"),
            f"sshkey {config.sshkey!r} is only used with an ssh target; it is ignored for "
            f"{target.describe()}",
            config.sshkey))
    if config.path != DEFAULT_PATH and all(t.kind is TargetKind.RAW for t in targets):
        warnings.append(Diagnostic(
            config.location("path"),
            f"path {config.path!r} is ignored for a raw target: the dump goes onto the device",
            config.path))
    return replace(config, core_collector=argv), errors, warnings


def _is_makedumpfile(argv: tuple[str, ...]) -> bool:
    return bool(argv) and argv[0].rsplit("/", 1)[-1] == "makedumpfile"


def _has_flat_flag(argv: tuple[str, ...]) -> bool:
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg.startswith("-") and not arg.startswith("--"):
            for ch in arg[1:]:
                if ch == "F":
                    return True
                if ch in _MAKEDUMPFILE_ARG_LETTERS:
                    break
    return False


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.fields: dict[str, Any] = {}
        # key -> (where, the directive as written, its text)
        self.seen: dict[str, tuple[Location, str, str]] = {}
        self.where = Location(source, 0)
        self.text = ""
        # the target lines after the first: (where, text, the target or None if invalid)
        self.more_targets: list[tuple[Location, str, Target | None]] = []

    def error(self, message: str) -> None:
        self.errors.append(Diagnostic(self.where, message, self.text))

    def warn(self, message: str) -> None:
        self.warnings.append(Diagnostic(self.where, message, self.text))

    def feed(self, number: int, line: str) -> None:
        self.where = Location(self.source, number)
        line = line.removesuffix("\r")
        self.text = values.printable(line)
        if "\x00" in line:
            self.error("the line contains a NUL byte; kdump.conf must be a text file")
            return
        if any("\udc80" <= ch <= "\udcff" for ch in line):
            self.error("the line is not valid UTF-8; save kdump.conf as UTF-8")
            return
        before, hash_sign, _ = line.partition("#")
        content = before.strip(_BLANKS)
        if not content:
            return
        bad = values.bad_char(content)
        if bad:
            hint = " (a CR inside a line: use LF or CRLF line ends)" if "\r" in content else ""
            self.error(f"the line contains {bad}{hint}; remove it")
            return
        match = _SPLIT.fullmatch(content)
        assert match is not None  # content is non-empty and starts with a non-blank
        option, value = match.group(1), match.group(2)
        if hash_sign and value and before[-1:] not in (" ", "\t"):
            self.warn(f"'#' starts a comment even inside a value, as in Fedora: the value of "
                      f"{option} is {value!r}; a value cannot contain '#'")
        self.directive(option, unquote_value(value))

    def directive(self, option: str, value: str) -> None:
        if option in DEPRECATED:
            self.error(f"{option!r} is a deprecated kdump.conf directive that kdumpctl refuses; "
                       f"{DEPRECATED[option]}")
            return
        if option in UNSUPPORTED_TARGETS:
            self.error(f"{option!r} dump targets are not supported by mkkdumprd; use one of "
                       f"{', '.join(LOCAL_FSTYPES)}, raw, nfs or ssh")
            return
        if option not in KNOWN:
            self.error(_unknown(option))
            return
        row = BY_SPELLING[option]
        if not value.strip():
            self.error(f"{option!r} has no value; e.g. `{row.example(option)}`")
            return
        if row.ignored is not None:
            self.warn(row.ignored)
        if option in row.obsolete:
            self.warn(row.obsolete[option].format(value=value))
        key = row.key
        updates = None if row.parse is None else row.parse(self, option, value)
        if key == "target" and key in self.seen:
            # Several targets are dump_policy's business, settled with the whole file.
            self.more_targets.append((self.where, self.text.strip(_BLANKS),
                                      None if updates is None else updates["target"]))
            return
        if key in self.seen:
            first, first_option, _ = self.seen[key]
            if first_option != option:
                obsolete = ", ".join(repr(name) for name in row.obsolete)
                self.error(f"{option!r} sets {key} again, already set at {first} by "
                           f"{first_option!r} ({obsolete} is its obsolete name); keep one")
            else:
                self.error(f"duplicated directive {option!r}, already set at {first}; "
                           "keep one")
            return
        if updates is not None and "target" in updates and key != "target":
            # dracut_args --mount names the target (config/dracut_mount.py): one target.
            if "target" in self.seen:
                first_text = self.seen["target"][2]
                self.error(f"more than one dump target: dracut_args --mount here and "
                           f"{first_text!r} at {self.seen['target'][0]}; keep only one")
                return
            self.seen["target"] = (self.where, option, self.text.strip(_BLANKS))
        self.seen[key] = (self.where, option, self.text.strip(_BLANKS))
        if updates is not None:
            self.fields.update(updates)

    # ---- the whole file -----------------------------------------------------------------

    def check_targets(self) -> None:
        """Several target lines need a dump_policy other than single (Fedora allows one)."""
        policy = self.fields.get("dump_policy", DumpPolicy.SINGLE)
        if policy is DumpPolicy.SINGLE:
            if "target" not in self.seen:
                return
            first, _, first_text = self.seen["target"]
            how = ("dump_policy is single" if "dump_policy" in self.seen
                   else "dump_policy is single by default")
            for where, text, _ in self.more_targets:
                self.errors.append(Diagnostic(
                    where,
                    f"more than one dump target: {text!r} here and {first_text!r} at {first} "
                    f"({how}); keep only one, or set `dump_policy fallback` (try them in "
                    "order) or `dump_policy all` (dump to each)",
                    text))
            return
        if "target" not in self.seen:
            self.warnings.append(Diagnostic(
                self.seen["dump_policy"][0],
                f"dump_policy {policy.value} with no target line: the one target is the "
                "filesystem that holds path",
                self.seen["dump_policy"][2]))
        found = [t for _, _, t in self.more_targets if t is not None]
        if found:
            self.fields["more_targets"] = tuple(found)
        seen: dict[str, Location] = {}
        listed = [(w, text, t) for w, text, t in self.more_targets if t is not None]
        first_target = self.fields.get("target")
        if first_target is not None:
            listed.insert(0, (self.seen["target"][0], self.seen["target"][2], first_target))
        for where, text, target in listed:
            key = _target_key(target)
            if key in seen:
                self.errors.append(Diagnostic(
                    where, f"dump target {target.describe()} is already listed at "
                           f"{seen[key]}; list each target once", text))
            else:
                seen[key] = where

    def result(self) -> ParseResult:
        if self.fields.get("force_rebuild") and self.fields.get("force_no_rebuild"):
            first = self.seen["force_rebuild"][0]
            self.errors.append(Diagnostic(
                self.seen["force_no_rebuild"][0],
                f"force_no_rebuild 1 contradicts force_rebuild 1 at {first}; "
                "set at most one of them to 1",
                self.seen["force_no_rebuild"][2]))
        if "fence_kdump_args" in self.seen and "fence_kdump_nodes" not in self.seen:
            where, _, text = self.seen["fence_kdump_args"]
            self.warnings.append(Diagnostic(
                where, "fence_kdump_args has no effect without fence_kdump_nodes (the peers "
                       "to tell); add `fence_kdump_nodes NODE...`", text))
        self.check_targets()
        explicit = frozenset(key for key in self.seen if BY_KEY[key].fields)
        locations = tuple((key, where) for key, (where, _, _) in self.seen.items()
                          if BY_KEY[key].fields)
        base = KdumpConfig(source=self.source, explicit=explicit, locations=locations,
                           **self.fields)
        config, errors, warnings = derive(base)
        all_errors = tuple(sorted([*self.errors, *errors], key=_order))
        all_warnings = tuple(sorted([*self.warnings, *warnings], key=_order))
        if all_errors:
            return ParseResult(None, all_errors, all_warnings)
        return ParseResult(replace(config, warnings=all_warnings), (), all_warnings)



def _target_key(target: Target) -> str:
    return f"{target.kind.value} {target.device or ''} {target.server or ''}"


def _order(diag: Diagnostic) -> int:
    return diag.where.line if diag.where else 0


def _unknown(option: str) -> str:
    hint = ""
    if "=" in option:
        name = option.split("=", 1)[0]
        if name in KNOWN:
            hint = f" (write `{name} VALUE`, without '=')"
    if not hint:
        import difflib  # only for a misspelt option

        close = difflib.get_close_matches(option.lower(), KNOWN, n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    valid = ", ".join(k for k in KNOWN if k not in ("nfs4", "default"))
    return f"unknown directive {option!r}{hint}; valid directives: {valid}"
