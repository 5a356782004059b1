"""kdump.conf's directives: one row each, and everything about a directive derived from it.

A row says how a directive is spelled, how its value is parsed into `KdumpConfig` fields,
how the setting is written back (`config show`, the image's /etc/kdump.conf) and recorded
(`config check --json`, the manifest), whether it changes the image (freshness compares only
the settings that do), which `when.config` conditions of modules.d it provides, and one
line of documentation. The parser's dispatch (config/kdumpconf.py), `config show` and the
JSON record (config/render.py), the freshness record (assemble/freshness.py) and the
module conditions (assemble/moduledef.py, assemble/resolver.py) all read `DIRECTIVES`.

Adding a directive is adding one row here (and its field to config/model.py if it is new);
tests/unit/test_config_directives.py proves the derivations.

Parsers get the text after the directive (Fedora's surrounding double quotes already
removed), report problems through `Report` and return the fields to set, or None. They
never raise on bad input and never evaluate a value.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from mkkdumprd.config import fence_kdump, values
from mkkdumprd.config.dracut_modules import our_module
from mkkdumprd.config.dracut_mount import FORM, parse_mount
from mkkdumprd.config.model import (
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_PATH,
    DEFAULT_SSHKEY,
    FINAL_ACTIONS,
    LOCAL_FSTYPES,
    MAX_HOOK_TIMEOUT,
    MAX_KEEP_DUMPS,
    Action,
    DumpPolicy,
    KdumpConfig,
    Target,
    TargetKind,
)
from mkkdumprd.config.syntax import quote_value, quote_words, split_words
from mkkdumprd.errors import Location


class Report(Protocol):
    """Where a parser reports; `where` is the line being parsed."""

    where: Location

    def error(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...


Fields = dict[str, Any]
# (report, the directive as written, its value) -> the KdumpConfig fields to set, or None.
Parser = Callable[[Report, str, str], Fields | None]
# The whole kdump.conf line for a config's setting, or None when nothing is set.
Writer = Callable[[KdumpConfig], str | None]
# The setting as JSON data (`config check --json`, the manifest).
Recorder = Callable[[KdumpConfig], dict[str, Any]]

_ALL_TARGETS = frozenset(TargetKind)


@dataclass(frozen=True, eq=False)
class Directive:
    """One kdump.conf directive: its spellings, parser, fields, examples and help."""

    key: str                     # its name: in `explicit`, `locations`, the JSON `defaults`
    spellings: tuple[str, ...]   # the words that start its line (first: the usual one)
    parse: Parser | None         # None: accepted and ignored with the `ignored` warning
    fields: tuple[str, ...]      # the KdumpConfig fields it sets
    examples: tuple[str, ...]    # valid lines; the one starting with a spelling is its hint
    doc: str                     # one line, for --help
    in_image: bool               # whether its value changes the image (freshness)
    write: Writer | None = None
    record: Recorder | None = None
    # `when.config` conditions of modules.d it provides: name -> does it hold for a config.
    when: Mapping[str, Callable[[KdumpConfig], bool]] = field(
        default_factory=lambda: MappingProxyType({}))
    # Target kinds for which the image's /etc/kdump.conf carries the setting.
    capture: frozenset[TargetKind] = frozenset()
    ignored: str | None = None   # the warning for a directive mkkdumprd accepts but ignores
    obsolete: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def example(self, spelling: str) -> str:
        return next((e for e in self.examples if e.split(" ", 1)[0] == spelling),
                    self.examples[0])

    def unset(self, config: KdumpConfig) -> str:
        """The comment `config show` writes when the setting is not set."""
        if self.key != "target":
            return f"# {self.key}: none"
        if config.target.device is not None:
            return (f"# target: local device {config.target.device} (filesystem type "
                    "detected when the image is built)")
        return "# target: the filesystem that holds path (no target line)"


# ---- parsers -------------------------------------------------------------------------------

def parse_target(report: Report, option: str, value: str) -> Fields | None:
    where = report.where
    if option in ("nfs", "nfs4"):
        split = values.split_nfs(value)
        if isinstance(split, str):
            report.error(f"nfs target: {split}")
            return None
        return {"target": Target(TargetKind.NFS, server=value, where=where)}
    if option == "ssh":
        ssh = values.split_ssh(value)
        if isinstance(ssh, str):
            report.error(f"ssh target: {ssh}")
            return None
        return {"target": Target(TargetKind.SSH, server=value, where=where)}
    err = values.check_device(value)
    if err:
        report.error(f"{option} target: {err}")
        return None
    if option == "raw":
        return {"target": Target(TargetKind.RAW, device=value, where=where)}
    return {"target": Target(TargetKind.LOCAL, device=value, fstype=option, where=where)}


def parse_absolute(report: Report, option: str, value: str) -> Fields | None:
    err = values.check_abs_path(option, value, f"`{example(option)}`")
    if err:
        report.error(err)
        return None
    return {option: value}


def parse_dump_path(report: Report, option: str, value: str) -> Fields | None:
    err = values.check_confined_path(option, value)
    if err:
        report.error(err)
        return None
    return parse_absolute(report, option, value)


def parse_hook_timeout(report: Report, option: str, value: str) -> Fields | None:
    if not value.isascii() or not value.isdigit() or int(value) > MAX_HOOK_TIMEOUT:
        report.error(f"hook_timeout {value!r} is not valid; give seconds from 0 to "
                     f"{MAX_HOOK_TIMEOUT} (0: no limit), e.g. `{example(option)}`")
        return None
    return {"hook_timeout": int(value)}


NETCONSOLE_PORT = 6666          # netconsole's own default target port


def parse_netconsole(report: Report, option: str, value: str) -> Fields | None:
    """HOST[:PORT], HOST an IPv4 address or a name (netconsole speaks IPv4 here)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(NETCONSOLE_PORT)
    bad = values.check_host(host) if host else "no host"
    if bad is None and ":" in host:
        bad = "IPv6 log hosts are not supported"
    if bad is not None or not port.isascii() or not port.isdigit() \
            or not 0 < int(port) < 65536:
        report.error(f"netconsole {value!r} is not valid ({bad or 'port 1-65535'}); give "
                     f"the log host and its UDP port, e.g. `{example(option)}`")
        return None
    return {"netconsole": f"{host}:{int(port)}"}


def parse_keep_dumps(report: Report, option: str, value: str) -> Fields | None:
    if not value.isascii() or not value.isdigit() or int(value) > MAX_KEEP_DUMPS:
        report.error(f"keep_dumps {value!r} is not valid; give how many old dumps to keep, "
                     f"from 0 to {MAX_KEEP_DUMPS} (0: keep all), e.g. `{example(option)}`")
        return None
    return {"keep_dumps": int(value)}


def words(report: Report, option: str, value: str) -> list[str] | None:
    try:
        return split_words(value)
    except ValueError:
        report.error(f"{option} value {value!r} has an unbalanced quote or a trailing "
                     "backslash; close every \" and ' (a '#' always starts a comment)")
        return None


def parse_collector(report: Report, option: str, value: str) -> Fields | None:
    """The collector's argv as written; what the target needs is settled in kdumpconf.derive."""
    argv = words(report, option, value)
    if argv is None:
        return None
    if not argv or not argv[0] or argv[0].startswith("-"):
        report.error(f"core_collector {value!r} must start with the command; e.g. "
                     f"`{example('core_collector')}`")
        return None
    return {"core_collector_written": tuple(argv)}


def parse_extra_bins(report: Report, option: str, value: str) -> Fields | None:
    found = words(report, option, value)
    if found is None:
        return None
    ok = True
    for word in found:
        if not word.strip():
            report.error("extra_bins has an empty entry; give command names or absolute paths")
            ok = False
        elif "/" in word and not word.startswith("/"):
            report.error(f"extra_bins entry {word!r} is a relative path; give a command "
                         "name found on PATH or an absolute path")
            ok = False
    return {"extra_bins": tuple(found)} if ok and found else None


def module_names(report: Report, what: str, value: str) -> tuple[str, ...] | None:
    found = words(report, what, value)
    if found is None:
        return None
    names = [n for w in found for n in w.replace(",", " ").split()]
    if not names:
        report.error(f"{what} names no module; e.g. `{example('extra_modules')}`")
        return None
    problems = [e for e in map(values.check_module, names) if e]
    for problem in problems:
        report.error(f"{what}: {problem}")
    return None if problems else tuple(names)


def parse_extra_modules(report: Report, option: str, value: str) -> Fields | None:
    names = module_names(report, option, value)
    return None if names is None else {"extra_modules": names}


def _action(allowed: tuple[Action, ...], key: str) -> Parser:
    def parse(report: Report, option: str, value: str) -> Fields | None:
        for action in allowed:
            if action.value == value:
                return {key: action}
        extra = ""
        if option == "final_action" and value in (Action.SHELL.value,
                                                  Action.DUMP_TO_ROOTFS.value):
            extra = f" ({value} is a failure_action value)"
        names = ", ".join(a.value for a in allowed)
        report.error(f"{option} {value!r} is not valid{extra}; use one of: {names}")
        return None
    return parse


def _one_of(kind: type[DumpPolicy], key: str) -> Parser:
    def parse(report: Report, option: str, value: str) -> Fields | None:
        for member in kind:
            if member.value == value:
                return {key: member}
        names = ", ".join(m.value for m in kind)
        report.error(f"{option} {value!r} is not valid; use one of: {names}")
        return None
    return parse


def _choice(first: str, second: str, *, true: str) -> Parser:
    """One of two words (shown in this order); the field is whether it is `true`."""
    def parse(report: Report, option: str, value: str) -> Fields | None:
        if value not in (first, second):
            report.error(f"{option} {value!r} is not valid; use {first} or {second}")
            return None
        return {option: value == true}
    return parse


def parse_dracut_args(report: Report, option: str, value: str) -> Fields | None:
    """Of dracut's flags only --add-drivers/--omit-drivers, --add/-a (modules.d entries of
    the same name, config/dracut_modules.py) and --mount count; no dracut runs.

    --mount names the dump target (config/dracut_mount.py), so this row may also return
    `target`, the one field another row (target) owns: the parser (config/kdumpconf.py)
    counts it as that target line, so a second target is still an error.
    """
    found = words(report, option, value)
    if found is None:
        return None
    lists: dict[str, list[str]] = {"--add-drivers": [], "--omit-drivers": []}
    added: list[str] = []  # --add: modules.d entries
    mount: Fields = {}     # the target a --mount names (config/dracut_mount.py)
    ok = True

    def operand(i: int, eq: str, arg: str, dash_ok: bool) -> tuple[str | None, int]:
        """A flag's value: after `=`, else the next word (not one starting with `-` unless
        `dash_ok`); None when there is none. Returns it and the index after it."""
        if eq:
            return arg, i
        if i >= len(found) or (not dash_ok and found[i].startswith("-")):
            return None, i
        return found[i], i + 1

    i = 0
    while i < len(found):
        word = found[i]
        name, eq, arg = word.partition("=") if word.startswith("--") else (word, "", "")
        i += 1
        if name == "--mount":
            given, i = operand(i, eq, arg, dash_ok=True)
            if given is None:
                report.error(f"dracut_args --mount needs a value: {FORM}")
                ok = False
                continue
            if "target" in mount:
                report.error("dracut_args has more than one --mount; Fedora allows one")
                ok = False
                continue
            target, errors, warnings = parse_mount(given, report.where)
            for message in errors:
                report.error(message)
            for message in warnings:
                report.warn(message)
            if target is None:
                ok = False
            else:
                mount["target"] = target
            continue
        if name in ("--add", "-a"):
            given, i = operand(i, eq, arg, dash_ok=False)
            if given is None:
                report.error(f'dracut_args {name} needs a list of dracut modules, e.g. '
                             f'{name} "lvm mdraid"')
                ok = False
                continue
            for module in given.replace(",", " ").split():
                ours, why = our_module(module)
                if ours is None:
                    report.warn(f"dracut_args {name} {module} is ignored: {why}")
                elif ours not in added:
                    added.append(ours)
            continue
        if name in lists:
            given, i = operand(i, eq, arg, dash_ok=False)
            if given is None:
                report.error(f"dracut_args {name} needs a list of modules, e.g. "
                             f'{name} "virtio_blk virtio_net"')
                ok = False
                continue
            names = module_names(report, f"dracut_args {name}", given)
            if names is None:
                ok = False
            else:
                lists[name].extend(names)
            continue
        ignored = [word]
        while i < len(found) and not found[i].startswith("-"):
            ignored.append(found[i])
            i += 1
        report.warn(f"dracut_args {shlex.join(ignored)!r} is ignored: mkkdumprd runs no "
                    "dracut and honours only --add-drivers, --omit-drivers and --add")
    if not ok:
        return None
    return {"add_drivers": tuple(lists["--add-drivers"]),
            "omit_drivers": tuple(lists["--omit-drivers"]), "add_modules": tuple(added),
            **mount}


def parse_fence_nodes(report: Report, option: str, value: str) -> Fields | None:
    found = words(report, option, value)
    if found is None:
        return None
    problems = [e for e in map(fence_kdump.check_node, found) if e]
    for problem in problems:
        report.error(problem)
    return None if problems or not found else {"fence_kdump_nodes": tuple(found)}


def parse_fence_args(report: Report, option: str, value: str) -> Fields | None:
    found = words(report, option, value)
    if found is None:
        return None
    args, problems = fence_kdump.parse_args(found)
    for problem in problems:
        report.error(f"fence_kdump_args: {problem}")
    return None if problems else {"fence_kdump_args": args}


# ---- writers and records -------------------------------------------------------------------

def write_target(config: KdumpConfig) -> str | None:
    """The target lines, in the order the dump tries them."""
    first = _target_line(config.target)
    more = [_target_line(t) or f"# {t.describe()}" for t in config.more_targets]
    if first is None and not more:
        return None
    return "\n".join([first or f"# {config.target.describe()}", *more])


def write_dump_policy(config: KdumpConfig) -> str:
    line = f"dump_policy {config.dump_policy.value}"
    n = len(config.targets)
    if config.dump_policy is DumpPolicy.FALLBACK:
        return f"{line}  # the {n} targets above are tried in this order until one holds a " \
            "complete vmcore"
    if config.dump_policy is DumpPolicy.ALL:
        return f"{line}  # each of the {n} targets above gets its own complete vmcore"
    return line


def _target_line(target: Target) -> str | None:
    if target.kind is TargetKind.LOCAL:
        if target.device is None or target.fstype is None:
            return None
        return f"{target.fstype} {quote_value(target.device)}"
    if target.kind is TargetKind.RAW:
        return f"raw {quote_value(target.device or '')}"
    return f"{target.kind.value} {quote_value(target.server or '')}"


def target_as_dict(target: Target) -> dict[str, Any]:
    data: dict[str, Any] = {"type": target.kind.value}
    if target.kind is TargetKind.LOCAL:
        data.update(fstype=target.fstype, device=target.device)
    elif target.kind is TargetKind.RAW:
        data["device"] = target.device
    elif target.kind is TargetKind.NFS:
        data["server"] = target.server
        nfs = values.split_nfs(target.server or "")
        if not isinstance(nfs, str):
            data.update(host=nfs[0], export=nfs[1])
    else:
        data["server"] = target.server
        ssh = values.split_ssh(target.server or "")
        if not isinstance(ssh, str):
            data.update(user=ssh[0], host=ssh[1])
    return data


def _value(key: str) -> Writer:
    """A single value, None when unset."""
    def write(config: KdumpConfig) -> str | None:
        value = getattr(config, key)
        return None if value is None else f"{key} {quote_value(value)}"
    return write


def _words(key: str) -> Writer:
    """A word list, None when empty."""
    def write(config: KdumpConfig) -> str | None:
        found: tuple[str, ...] = getattr(config, key)
        return f"{key} {quote_words(found)}" if found else None
    return write


def _enum(key: str) -> Writer:
    return lambda config: f"{key} {getattr(config, key).value}"


def _bool(key: str, true: str, false: str) -> Writer:
    return lambda config: f"{key} {true if getattr(config, key) else false}"


def write_dracut_args(config: KdumpConfig) -> str | None:
    flags: list[str] = []
    for flag, names in (("--add-drivers", config.add_drivers),
                        ("--omit-drivers", config.omit_drivers),
                        ("--add", config.add_modules)):
        if names:
            flags += [flag, " ".join(names)]
    return f"dracut_args {quote_words(flags)}" if flags else None


def _record_dracut_args(config: KdumpConfig) -> dict[str, Any]:
    """add_modules only when set: the manifest of every image holds this record, and
    images built without dracut_args --add keep the bytes they had."""
    out = _as_is("add_drivers", "omit_drivers")(config)
    if config.add_modules:
        out["add_modules"] = list(config.add_modules)
    return out


def _as_is(*keys: str) -> Recorder:
    def record(config: KdumpConfig) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in keys:
            value = getattr(config, key)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Action):
                value = value.value
            out[key] = value
        return out
    return record


def _if_set(*keys: str) -> Recorder:
    """Recorded only when set, so the record of a config without them (every image's
    manifest from before they existed) stays as it was."""
    inner = _as_is(*keys)
    return lambda config: {k: v for k, v in inner(config).items() if v}


# ---- the table -----------------------------------------------------------------------------

# Row order is the order of `config show` and of the image's /etc/kdump.conf.
DIRECTIVES: tuple[Directive, ...] = (
    Directive(
        "target", ("raw", "nfs", "nfs4", "ssh", *LOCAL_FSTYPES), parse_target,
        ("target", "more_targets"),
        ("raw /dev/disk/by-id/virtio-dump", "nfs nfs.example.com:/export/kdump",
         "nfs4 nfs.example.com:/export/kdump", "ssh root@dump.example.com",
         *(f"{fs} UUID=01234567-89ab-cdef-0123-456789abcdef" for fs in LOCAL_FSTYPES)),
        "where the dump goes: FSTYPE DEVICE, raw DEVICE, nfs HOST:/EXPORT or ssh USER@HOST "
        "(without a target line: the filesystem that holds path)",
        in_image=True, write=write_target,
        record=lambda c: {"target": target_as_dict(c.target),
                          **({"more_targets": [target_as_dict(t) for t in c.more_targets]}
                             if c.more_targets else {})},
        capture=_ALL_TARGETS),
    Directive(
        "dump_policy", ("dump_policy",), _one_of(DumpPolicy, "dump_policy"), ("dump_policy",),
        ("dump_policy fallback",),
        "what several target lines mean: single (the default: one target only), fallback "
        "(try them in file order until one holds a complete vmcore) or all (a complete "
        "vmcore on each; saved when at least one holds it)",
        in_image=True, write=write_dump_policy,
        # a single-target config records nothing: its record (and so every manifest and
        # freshness comparison made before dump_policy existed) stays as it was
        record=lambda c: ({} if c.dump_policy is DumpPolicy.SINGLE
                          else {"dump_policy": c.dump_policy.value})),
    Directive(
        "path", ("path",), parse_dump_path, ("path",), (f"path {DEFAULT_PATH}",),
        "the dump directory, relative to the target's root (not used by raw)",
        in_image=True, write=_value("path"), record=_as_is("path"),
        capture=_ALL_TARGETS - {TargetKind.RAW}),
    Directive(
        "keep_dumps", ("keep_dumps",), parse_keep_dumps, ("keep_dumps",), ("keep_dumps 3",),
        "before writing a dump to a filesystem target, remove this host's oldest complete "
        "dump directories made by mkkdumprd there beyond this many (0, the default: keep "
        "all; mkkdumprd's own)",
        in_image=True, write=lambda c: f"keep_dumps {c.keep_dumps}" if c.keep_dumps else None,
        # 0 records nothing, so images made before keep_dumps existed keep their record
        record=lambda c: {"keep_dumps": c.keep_dumps} if c.keep_dumps else {},
        capture=frozenset({TargetKind.LOCAL, TargetKind.NFS})),
    Directive(
        "core_collector", ("core_collector",), parse_collector,
        ("core_collector", "core_collector_written"),
        ("core_collector makedumpfile -l --message-level 7 -d 31",),
        "the command that copies /proc/vmcore (makedumpfile needs -F for raw and ssh)",
        in_image=True, write=_words("core_collector"), record=_as_is("core_collector"),
        capture=_ALL_TARGETS),
    Directive(
        "sshkey", ("sshkey",), parse_absolute, ("sshkey",), (f"sshkey {DEFAULT_SSHKEY}",),
        "the private key for an ssh target",
        in_image=True, write=_value("sshkey"), record=_as_is("sshkey"),
        capture=frozenset({TargetKind.SSH})),
    Directive(
        "kdump_pre", ("kdump_pre",), parse_absolute, ("kdump_pre",),
        ("kdump_pre /usr/local/bin/before-dump",),
        "a program run before the dump (copied into the image)",
        in_image=True, write=_value("kdump_pre"), record=_as_is("kdump_pre"),
        when={"kdump_pre": lambda c: bool(c.kdump_pre)}, capture=_ALL_TARGETS),
    Directive(
        "kdump_post", ("kdump_post",), parse_absolute, ("kdump_post",),
        ("kdump_post /usr/local/bin/after-dump",),
        "a program run after the dump (copied into the image)",
        in_image=True, write=_value("kdump_post"), record=_as_is("kdump_post"),
        when={"kdump_post": lambda c: bool(c.kdump_post)}, capture=_ALL_TARGETS),
    Directive(
        "hook_timeout", ("hook_timeout",), parse_hook_timeout, ("hook_timeout",),
        (f"hook_timeout {DEFAULT_HOOK_TIMEOUT}",),
        "seconds each hook (kdump_pre, kdump_post, pre.d/post.d) may run at dump time "
        "before it is killed and the dump goes on (0: no limit; mkkdumprd's own)",
        in_image=True, write=lambda c: f"hook_timeout {c.hook_timeout}",
        record=_as_is("hook_timeout")),
    Directive(
        "extra_bins", ("extra_bins",), parse_extra_bins, ("extra_bins",),
        ("extra_bins /usr/bin/lsblk",),
        "more programs to copy into the image (names on PATH or absolute paths)",
        in_image=True, write=_words("extra_bins"), record=_as_is("extra_bins"),
        when={"extra_bins": lambda c: bool(c.extra_bins)}, capture=_ALL_TARGETS),
    Directive(
        "extra_modules", ("extra_modules",), parse_extra_modules, ("extra_modules",),
        ("extra_modules virtio_blk",),
        "more kernel modules to load in the capture kernel",
        in_image=True, write=_words("extra_modules"), record=_as_is("extra_modules"),
        when={"extra_modules": lambda c: bool(c.extra_modules)}, capture=_ALL_TARGETS),
    Directive(
        "failure_action", ("failure_action", "default"), _action(tuple(Action),
                                                                 "failure_action"),
        ("failure_action",), ("failure_action reboot",),
        "what to do when the dump fails: " + ", ".join(a.value for a in Action),
        in_image=True, write=_enum("failure_action"), record=_as_is("failure_action"),
        when={"failure_action_shell": lambda c: c.failure_action is Action.SHELL,
              "failure_action_dump_to_rootfs":
              lambda c: c.failure_action is Action.DUMP_TO_ROOTFS},
        capture=_ALL_TARGETS,
        obsolete={"default": "'default' is obsolete; write `failure_action {value}` instead "
                             "(it means the same)"}),
    Directive(
        "final_action", ("final_action",), _action(FINAL_ACTIONS, "final_action"),
        ("final_action",), ("final_action reboot",),
        "what to do after the dump: " + ", ".join(a.value for a in FINAL_ACTIONS),
        in_image=True, write=_enum("final_action"), record=_as_is("final_action"),
        capture=_ALL_TARGETS),
    Directive(
        "force_rebuild", ("force_rebuild",), _choice("0", "1", true="1"), ("force_rebuild",),
        ("force_rebuild 0",), "1: rebuild the image on every start",
        in_image=False, write=_bool("force_rebuild", "1", "0"),
        record=_as_is("force_rebuild")),
    Directive(
        "force_no_rebuild", ("force_no_rebuild",), _choice("0", "1", true="1"),
        ("force_no_rebuild",),
        ("force_no_rebuild 0",), "1: never rebuild an existing image",
        in_image=False, write=_bool("force_no_rebuild", "1", "0"),
        record=_as_is("force_no_rebuild")),
    Directive(
        "auto_reset_crashkernel", ("auto_reset_crashkernel",), _choice("yes", "no", true="yes"),
        ("auto_reset_crashkernel",), ("auto_reset_crashkernel yes",),
        "yes: on a kernel install, replace crashkernel= with the new recommendation, only "
        "when the current value is one mkkdumprd recommended (`crashkernel apply --auto`)",
        in_image=False, write=_bool("auto_reset_crashkernel", "yes", "no"),
        record=_as_is("auto_reset_crashkernel")),
    Directive(
        "dracut_args", ("dracut_args",), parse_dracut_args,
        ("add_drivers", "omit_drivers", "add_modules"),
        ('dracut_args --add-drivers "virtio_blk"', 'dracut_args --add "lvm mdraid"'),
        "only --add-drivers, --omit-drivers, --add (lvm, mdraid, crypt, btrfs, multipath: "
        "as `build --add`; other dracut modules are ignored with a warning) and --mount "
        "(the dump target, as in RHEL 7; `config show` writes it as a target line) count "
        "(no dracut runs)",
        in_image=True, write=write_dracut_args,
        record=_record_dracut_args),
    Directive(
        "netconsole", ("netconsole",), parse_netconsole, ("netconsole",),
        (f"netconsole 192.168.1.10:{NETCONSOLE_PORT}",),
        "stream the capture kernel's console over UDP to HOST[:PORT] (netconsole, through "
        "the capture network nfs/ssh use, brought up for local targets too)",
        in_image=True, write=_value("netconsole"), record=_as_is("netconsole"),
        when={"netconsole": lambda c: c.netconsole is not None}, capture=_ALL_TARGETS),
    Directive(
        "fence_kdump_args", ("fence_kdump_args",), parse_fence_args, ("fence_kdump_args",),
        ("fence_kdump_args -p 7410 -f auto -c 0 -i 10",),
        "fence_kdump_send's options (-p PORT, -f auto|ipv4|ipv6, -c COUNT, -i SECONDS, -v)",
        in_image=True, write=_words("fence_kdump_args"),
        record=_if_set("fence_kdump_args"), capture=_ALL_TARGETS),
    Directive(
        "fence_kdump_nodes", ("fence_kdump_nodes",), parse_fence_nodes, ("fence_kdump_nodes",),
        ("fence_kdump_nodes node1 node2",),
        "cluster peers told (fence_kdump_send, UDP) while this node dumps, so they do not "
        "fence it; the capture image brings its network up for them",
        in_image=True, write=_words("fence_kdump_nodes"),
        record=_if_set("fence_kdump_nodes"),
        when={"fence_kdump": lambda c: bool(c.fence_kdump_nodes)}, capture=_ALL_TARGETS),
    Directive(
        "kdump_emergency", ("kdump_emergency",), parse_absolute, ("kdump_emergency",),
        ("kdump_emergency /usr/local/bin/on-error",),
        "a program run when the dump fails, after /etc/kdump/emergency.d and before "
        "failure_action (copied into the image; bounded by hook_timeout)",
        in_image=True, write=_value("kdump_emergency"), record=_if_set("kdump_emergency"),
        when={"kdump_emergency": lambda c: bool(c.kdump_emergency)}, capture=_ALL_TARGETS),
)

# Settings added after images recorded their configuration, recorded (and listed among the
# defaults) only when set: the record of every image that does not use them stays as it was.
RECORDED_WHEN_SET = ("dump_policy", "keep_dumps")

BY_KEY: Mapping[str, Directive] = MappingProxyType({d.key: d for d in DIRECTIVES})
BY_SPELLING: Mapping[str, Directive] = MappingProxyType(
    {s: d for d in DIRECTIVES for s in d.spellings})
# The directives that set the configuration (the ignored ones set nothing).
SETTINGS: tuple[Directive, ...] = tuple(d for d in DIRECTIVES if d.fields)
SPELLINGS: tuple[str, ...] = tuple(BY_SPELLING)
# The `when.config` conditions a module.toml may name.
WHEN_KEYS: frozenset[str] = frozenset(k for d in DIRECTIVES for k in d.when)

# The JSON record's key order is part of every image (the manifest holds it), so it stays as
# it was before this table existed; keys of directives added later follow in table order.
_RECORD_ORDER = ("target", "path", "core_collector", "kdump_pre", "kdump_post", "extra_bins",
                 "extra_modules", "failure_action", "final_action", "force_rebuild",
                 "force_no_rebuild", "add_drivers", "omit_drivers", "sshkey",
                 "auto_reset_crashkernel")
_RECORD_RANK = {key: i for i, key in enumerate(_RECORD_ORDER)}


def example(spelling: str) -> str:
    return BY_SPELLING[spelling].example(spelling)


def record(config: KdumpConfig) -> dict[str, Any]:
    """Every setting as JSON data, in the record's key order."""
    data: dict[str, Any] = {}
    for d in SETTINGS:
        assert d.record is not None
        data.update(d.record(config))
    order = sorted(data, key=lambda k: _RECORD_RANK.get(k, len(_RECORD_RANK)))
    return {k: data[k] for k in order}


def record_keys(rows: tuple[Directive, ...]) -> tuple[str, ...]:
    """The JSON keys these rows record."""
    return tuple(k for d in rows if d.record is not None for k in d.record(KdumpConfig()))


# The JSON keys of the settings that do not change what goes into the image: freshness does
# not compare them, so toggling them is no reason to rebuild.
NOT_IN_IMAGE: tuple[str, ...] = record_keys(tuple(d for d in SETTINGS if not d.in_image))


def conditions(config: KdumpConfig) -> frozenset[str]:
    """The `when.config` conditions that hold for `config`."""
    return frozenset(k for d in DIRECTIVES for k, holds in d.when.items() if holds(config))


def help_text() -> str:
    """The directives with their one-line docs, for --help (click keeps `\\b` blocks as is)."""
    lines = ["\b", "kdump.conf directives:"]
    for d in DIRECTIVES:
        lines.append("  " + ", ".join(s for s in d.spellings if s not in d.obsolete))
        lines += textwrap.wrap(d.doc, 80, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
