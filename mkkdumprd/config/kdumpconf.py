"""kdump.conf in Fedora's syntax, read with kdumpctl's strictness.

Line handling is Fedora's (`kdump_read_conf`): blank lines and everything from `#` on are
dropped (a `#` starts a comment even inside a value), surrounding blanks go, the first word
is the directive and the rest its value, and a value wrapped in double quotes loses them.
Acceptance is kdumpctl's (`parse_config`): unknown, duplicated, empty and deprecated
directives and a second dump target are errors. Checks that Fedora only makes when it builds
the initrd but that need no host (makedumpfile without -F on raw/ssh, action names, absolute
paths) are made here too, so `mkkdumprd config check` catches them.

Every error is collected (never only the first), each with file:line, the offending text and
what would be valid. Parsing never raises on bad input. Values are carried verbatim: nothing
here or downstream evaluates them (the templates shell-quote every value).

Choices where Fedora has no answer or mkkdumprd differs:
- `fence_kdump_args`, `fence_kdump_nodes` and `kdump_emergency` are accepted with a warning
  that mkkdumprd ignores them (a cluster relying on fence_kdump must not use this image);
- `minix` and `virtiofs` targets and `dracut_args --mount` are errors (not supported);
- of `dracut_args` only `--add-drivers`/`--omit-drivers` count; every other flag is ignored
  with a warning, since no dracut runs;
- `core_collector`, `extra_bins`, `extra_modules` and `dracut_args` are split like shell
  words (quotes group, unbalanced quotes are an error);
- `hook_timeout SECONDS` (mkkdumprd's own; 0 = no limit) bounds each hook at dump time;
- `path` with a `..` component is an error: it would lead out of the dump target.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mkkdumprd.config import values
from mkkdumprd.config.model import (
    DEFAULT_COLLECTOR,
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_PATH,
    DEFAULT_SSHKEY,
    FINAL_ACTIONS,
    LOCAL_FSTYPES,
    MAX_HOOK_TIMEOUT,
    Action,
    Diagnostic,
    KdumpConfig,
    Target,
    TargetKind,
)
from mkkdumprd.errors import ConfigError, Location

DEFAULT_CONF = Path("/etc/kdump.conf")


@dataclass(frozen=True)
class ParseResult:
    config: KdumpConfig | None
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]

    @property
    def valid(self) -> bool:
        return not self.errors


EXAMPLES = {
    "raw": "raw /dev/disk/by-id/virtio-dump",
    "nfs": "nfs nfs.example.com:/export/kdump",
    "nfs4": "nfs4 nfs.example.com:/export/kdump",
    "ssh": "ssh root@dump.example.com",
    "sshkey": f"sshkey {DEFAULT_SSHKEY}",
    "path": f"path {DEFAULT_PATH}",
    "core_collector": "core_collector makedumpfile -l --message-level 7 -d 31",
    "kdump_pre": "kdump_pre /usr/local/bin/before-dump",
    "kdump_post": "kdump_post /usr/local/bin/after-dump",
    "hook_timeout": f"hook_timeout {DEFAULT_HOOK_TIMEOUT}",
    "extra_bins": "extra_bins /usr/bin/lsblk",
    "extra_modules": "extra_modules virtio_blk",
    "failure_action": "failure_action reboot",
    "default": "failure_action reboot",
    "final_action": "final_action reboot",
    "force_rebuild": "force_rebuild 0",
    "force_no_rebuild": "force_no_rebuild 0",
    "dracut_args": 'dracut_args --add-drivers "virtio_blk"',
    "auto_reset_crashkernel": "auto_reset_crashkernel yes",
    "fence_kdump_args": "fence_kdump_args -p 7410",
    "fence_kdump_nodes": "fence_kdump_nodes node1 node2",
    "kdump_emergency": "kdump_emergency /usr/local/bin/on-error",
    **{fs: f"{fs} UUID=01234567-89ab-cdef-0123-456789abcdef" for fs in LOCAL_FSTYPES},
}

DEPRECATED = {
    "net": "write the target as `nfs HOST:/EXPORT` or `ssh USER@HOST`",
    "options": "pass module options as MODULE.PARAM=VALUE on the capture kernel's command line",
    "link_delay": "remove it: the capture image waits for the network itself",
    "disk_timeout": "remove it: the capture image waits for the target device itself",
    "debug_mem_level": "remove it",
    "blacklist": 'use `dracut_args --omit-drivers "MODULE"`',
}

UNSUPPORTED_TARGETS = ("minix", "virtiofs")

IGNORED = {
    "fence_kdump_args": "fence_kdump is not supported by mkkdumprd; the line is ignored, so "
    "a cluster node will not signal its peers while it dumps",
    "fence_kdump_nodes": "fence_kdump is not supported by mkkdumprd; the line is ignored, so "
    "a cluster node will not signal its peers while it dumps",
    "kdump_emergency": "kdump_emergency is not supported by mkkdumprd; the line is ignored "
    "(failure_action still runs)",
}

TARGET_DIRECTIVES = ("raw", "nfs", "nfs4", "ssh", *LOCAL_FSTYPES)
SETTINGS = (
    "path", "core_collector", "sshkey", "kdump_pre", "kdump_post", "hook_timeout",
    "extra_bins", "extra_modules", "failure_action", "default", "final_action", "force_rebuild",
    "force_no_rebuild", "dracut_args", "auto_reset_crashkernel",
)
KNOWN = (*TARGET_DIRECTIVES, *SETTINGS, *IGNORED)

_BLANKS = " \t\r\f\v"
_SPLIT = re.compile(r"([^ \t]+)[ \t]*(.*)", re.S)
# makedumpfile's short options that take an argument (its getopt string is
# "b:cDd:eEFfg:hi:lL:pRvXx:z"): an F after one of them in a cluster is that argument.
_MAKEDUMPFILE_ARG_LETTERS = frozenset("bdgiLx")
_FAILURE_NAMES = ", ".join(a.value for a in Action)
_FINAL_NAMES = ", ".join(a.value for a in FINAL_ACTIONS)


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
        data = path.read_bytes()
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
    target = config.target
    streamed = target.kind in (TargetKind.RAW, TargetKind.SSH)
    written = config.core_collector_written
    where = config.location("core_collector")
    argv: tuple[str, ...]
    if written is None:
        argv = (DEFAULT_COLLECTOR[0], "-F", *DEFAULT_COLLECTOR[1:]) if streamed \
            else DEFAULT_COLLECTOR
    else:
        argv = written
        shown = shlex.join(written)
        if _is_makedumpfile(argv):
            if streamed and not _has_flat_flag(argv):
                errors.append(Diagnostic(
                    where,
                    f"core_collector {shown!r} lacks -F, which the {target.kind.value} target "
                    f"({target.describe()}) needs because the dump is streamed; add it, e.g. "
                    "`core_collector makedumpfile -F -l --message-level 7 -d 31`",
                    shown))
            elif not streamed and "-F" in argv:
                argv = tuple(a for a in argv if a != "-F")
                warnings.append(Diagnostic(
                    where,
                    f"-F in core_collector {shown!r} is dropped for the filesystem target "
                    f"({target.describe()}), as Fedora does, so the vmcore is not flattened",
                    shown))
        elif target.kind is TargetKind.RAW:
            warnings.append(Diagnostic(
                where,
                f"core_collector {shown!r} is not makedumpfile, so `mkkdumprd savecore` "
                "cannot recover the dump from the raw device; you will have to recover it "
                "manually",
                shown))
    if config.sshkey != DEFAULT_SSHKEY and target.kind is not TargetKind.SSH:
        warnings.append(Diagnostic(
            config.location("sshkey"),
            f"sshkey {config.sshkey!r} is only used with an ssh target; it is ignored for "
            f"{target.describe()}",
            config.sshkey))
    if config.path != DEFAULT_PATH and target.kind is TargetKind.RAW:
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
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        self.directive(option, value)

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
        if not value.strip():
            self.error(f"{option!r} has no value; e.g. `{EXAMPLES[option]}`")
            return
        if option in IGNORED:
            self.warn(IGNORED[option])
        handler = getattr(self, "_" + option, None)
        updates: dict[str, Any] | None
        if option in TARGET_DIRECTIVES:
            key, updates = "target", self._target(option, value)
        elif option in IGNORED:
            key, updates = option, None
        else:
            assert handler is not None
            key = "failure_action" if option == "default" else option
            updates = handler(value)
        if key in self.seen:
            first, first_option, first_text = self.seen[key]
            if key == "target":
                self.error(f"more than one dump target: {option} here and {first_text!r} at "
                           f"{first}; keep only one")
            elif first_option != option:
                self.error(f"{option!r} sets failure_action again, already set at {first} "
                           f"by {first_option!r} ('default' is its obsolete name); keep one")
            else:
                self.error(f"duplicated directive {option!r}, already set at {first}; "
                           "keep one")
            return
        self.seen[key] = (self.where, option, self.text.strip(_BLANKS))
        if updates is not None:
            self.fields.update(updates)

    # ---- dump targets -------------------------------------------------------------------

    def _target(self, option: str, value: str) -> dict[str, Any] | None:
        if option in ("nfs", "nfs4"):
            split = values.split_nfs(value)
            if isinstance(split, str):
                self.error(f"nfs target: {split}")
                return None
            return {"target": Target(TargetKind.NFS, server=value, where=self.where)}
        if option == "ssh":
            ssh = values.split_ssh(value)
            if isinstance(ssh, str):
                self.error(f"ssh target: {ssh}")
                return None
            return {"target": Target(TargetKind.SSH, server=value, where=self.where)}
        err = values.check_device(value)
        if err:
            self.error(f"{option} target: {err}")
            return None
        if option == "raw":
            return {"target": Target(TargetKind.RAW, device=value, where=self.where)}
        return {"target": Target(TargetKind.LOCAL, device=value, fstype=option,
                                 where=self.where)}

    # ---- settings (one method per directive, named after it) ---------------------------

    def _abs(self, key: str, value: str) -> dict[str, Any] | None:
        err = values.check_abs_path(key, value, f"`{EXAMPLES[key]}`")
        if err:
            self.error(err)
            return None
        return {key: value}

    def _path(self, value: str) -> dict[str, Any] | None:
        err = values.check_confined_path("path", value)
        if err:
            self.error(err)
            return None
        return self._abs("path", value)

    def _hook_timeout(self, value: str) -> dict[str, Any] | None:
        if not value.isascii() or not value.isdigit() or int(value) > MAX_HOOK_TIMEOUT:
            self.error(f"hook_timeout {value!r} is not valid; give seconds from 0 to "
                       f"{MAX_HOOK_TIMEOUT} (0: no limit), e.g. `{EXAMPLES['hook_timeout']}`")
            return None
        return {"hook_timeout": int(value)}

    def _sshkey(self, value: str) -> dict[str, Any] | None:
        return self._abs("sshkey", value)

    def _kdump_pre(self, value: str) -> dict[str, Any] | None:
        return self._abs("kdump_pre", value)

    def _kdump_post(self, value: str) -> dict[str, Any] | None:
        return self._abs("kdump_post", value)

    def _words(self, option: str, value: str) -> list[str] | None:
        try:
            return shlex.split(value)
        except ValueError:
            self.error(f"{option} value {value!r} has an unbalanced quote or a trailing "
                       "backslash; close every \" and ' (a '#' always starts a comment)")
            return None

    def _core_collector(self, value: str) -> dict[str, Any] | None:
        argv = self._words("core_collector", value)
        if argv is None:
            return None
        if not argv or not argv[0] or argv[0].startswith("-"):
            self.error(f"core_collector {value!r} must start with the command; e.g. "
                       f"`{EXAMPLES['core_collector']}`")
            return None
        return {"core_collector_written": tuple(argv)}

    def _extra_bins(self, value: str) -> dict[str, Any] | None:
        words = self._words("extra_bins", value)
        if words is None:
            return None
        ok = True
        for word in words:
            if not word.strip():
                self.error("extra_bins has an empty entry; give command names or absolute "
                           "paths")
                ok = False
            elif "/" in word and not word.startswith("/"):
                self.error(f"extra_bins entry {word!r} is a relative path; give a command "
                           "name found on PATH or an absolute path")
                ok = False
        return {"extra_bins": tuple(words)} if ok and words else None

    def _extra_modules(self, value: str) -> dict[str, Any] | None:
        names = self._module_names("extra_modules", value)
        return None if names is None else {"extra_modules": names}

    def _module_names(self, what: str, value: str) -> tuple[str, ...] | None:
        words = self._words(what, value)
        if words is None:
            return None
        names = [n for w in words for n in w.replace(",", " ").split()]
        if not names:
            self.error(f"{what} names no module; e.g. `{EXAMPLES['extra_modules']}`")
            return None
        problems = [e for e in map(values.check_module, names) if e]
        for problem in problems:
            self.error(f"{what}: {problem}")
        return None if problems else tuple(names)

    def _action(self, option: str, value: str, allowed: tuple[Action, ...]) -> Action | None:
        names = ", ".join(a.value for a in allowed)
        for action in allowed:
            if action.value == value:
                return action
        extra = ""
        if option == "final_action" and value in (Action.SHELL.value,
                                                  Action.DUMP_TO_ROOTFS.value):
            extra = f" ({value} is a failure_action value)"
        self.error(f"{option} {value!r} is not valid{extra}; use one of: {names}")
        return None

    def _failure_action(self, value: str) -> dict[str, Any] | None:
        action = self._action("failure_action", value, tuple(Action))
        return None if action is None else {"failure_action": action}

    def _default(self, value: str) -> dict[str, Any] | None:
        self.warn("'default' is obsolete; write `failure_action "
                  f"{value}` instead (it means the same)")
        action = self._action("default", value, tuple(Action))
        return None if action is None else {"failure_action": action}

    def _final_action(self, value: str) -> dict[str, Any] | None:
        action = self._action("final_action", value, FINAL_ACTIONS)
        return None if action is None else {"final_action": action}

    def _flag(self, option: str, value: str) -> dict[str, Any] | None:
        if value not in ("0", "1"):
            self.error(f"{option} {value!r} is not valid; use 0 or 1")
            return None
        return {option: value == "1"}

    def _force_rebuild(self, value: str) -> dict[str, Any] | None:
        return self._flag("force_rebuild", value)

    def _force_no_rebuild(self, value: str) -> dict[str, Any] | None:
        return self._flag("force_no_rebuild", value)

    def _auto_reset_crashkernel(self, value: str) -> dict[str, Any] | None:
        if value not in ("yes", "no"):
            self.error(f"auto_reset_crashkernel {value!r} is not valid; use yes or no")
            return None
        return {"auto_reset_crashkernel": value == "yes"}

    def _dracut_args(self, value: str) -> dict[str, Any] | None:
        words = self._words("dracut_args", value)
        if words is None:
            return None
        lists: dict[str, list[str]] = {"--add-drivers": [], "--omit-drivers": []}
        ok = True
        i = 0
        while i < len(words):
            word = words[i]
            name, eq, arg = word.partition("=") if word.startswith("--") else (word, "", "")
            i += 1
            if name == "--mount":
                self.error("dracut_args --mount is not supported by mkkdumprd; write the dump "
                           "target as its own line, e.g. `ext4 UUID=...` or "
                           "`nfs host:/export`")
                ok = False
                i += 0 if eq else 1
                continue
            if name in lists:
                if not eq:
                    if i >= len(words) or words[i].startswith("-"):
                        self.error(f"dracut_args {name} needs a list of modules, e.g. "
                                   f'{name} "virtio_blk virtio_net"')
                        ok = False
                        continue
                    arg = words[i]
                    i += 1
                names = self._module_names(f"dracut_args {name}", arg)
                if names is None:
                    ok = False
                else:
                    lists[name].extend(names)
                continue
            ignored = [word]
            while i < len(words) and not words[i].startswith("-"):
                ignored.append(words[i])
                i += 1
            self.warn(f"dracut_args {shlex.join(ignored)!r} is ignored: mkkdumprd runs no "
                      "dracut and honours only --add-drivers and --omit-drivers")
        if not ok:
            return None
        return {"add_drivers": tuple(lists["--add-drivers"]),
                "omit_drivers": tuple(lists["--omit-drivers"])}

    # ---- the whole file -----------------------------------------------------------------

    def result(self) -> ParseResult:
        if self.fields.get("force_rebuild") and self.fields.get("force_no_rebuild"):
            first = self.seen["force_rebuild"][0]
            self.errors.append(Diagnostic(
                self.seen["force_no_rebuild"][0],
                f"force_no_rebuild 1 contradicts force_rebuild 1 at {first}; "
                "set at most one of them to 1",
                self.seen["force_no_rebuild"][2]))
        explicit = frozenset(key for key in self.seen if key not in IGNORED)
        locations = tuple((key, where) for key, (where, _, _) in self.seen.items()
                          if key not in IGNORED)
        base = KdumpConfig(source=self.source, explicit=explicit, locations=locations,
                           **self.fields)
        config, errors, warnings = derive(base)
        all_errors = tuple(sorted([*self.errors, *errors], key=_order))
        all_warnings = tuple(sorted([*self.warnings, *warnings], key=_order))
        if all_errors:
            return ParseResult(None, all_errors, all_warnings)
        return ParseResult(replace(config, warnings=all_warnings), (), all_warnings)


def _order(diag: Diagnostic) -> int:
    return diag.where.line if diag.where else 0


def _unknown(option: str) -> str:
    hint = ""
    if "=" in option:
        name = option.split("=", 1)[0]
        if name in KNOWN:
            hint = f" (write `{name} VALUE`, without '=')"
    if not hint:
        close = difflib.get_close_matches(option.lower(), KNOWN, n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    valid = ", ".join(k for k in KNOWN if k not in ("nfs4", "default"))
    return f"unknown directive {option!r}{hint}; valid directives: {valid}"
