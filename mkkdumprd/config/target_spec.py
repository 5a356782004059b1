"""`--target SPEC`: the dump target given on the command line, overriding kdump.conf's.

Accepted forms (SPEC_HELP is the text `--help` shows):

    local                        the file's local target if it has one, else the
                                 filesystem that holds `path`
    local:DEVICE[:PATH]          DEVICE: /dev/..., UUID=, LABEL=, PARTUUID=
    local:PATH | local::PATH     the filesystem that holds PATH
    FSTYPE:DEVICE[:PATH]         the same with the type given (ext2, ext3, ext4, xfs, btrfs)
    raw:DEVICE
    nfs                          the file's nfs target
    nfs:SERVER:/EXPORT[/PATH]    the export is the first component (/EXPORT); the rest, if
                                 any, is the dump path inside it
    nfs:SERVER:/EX/PORT:/PATH    an export of several components, then the path
    ssh                          the file's ssh target
    ssh:USER@HOST[:PATH]

PATH is where the dump directories go, relative to the target's root (kdump.conf's `path`).
A ':/' ends the device or host part, so `/dev/disk/by-path/pci-0000:00:1f.2` and unbracketed
IPv6 ssh hosts work; an IPv6 NFS server goes in brackets. Example:
`nfs:[2001:db8::1]:/export/crash` mounts [2001:db8::1]:/export and dumps into /crash.
"""

from __future__ import annotations

from dataclasses import replace

from mkkdumprd.config import values
from mkkdumprd.config.kdumpconf import derive
from mkkdumprd.config.model import (
    LOCAL_FSTYPES,
    POLICY_HELP,
    DumpPolicy,
    KdumpConfig,
    Target,
    TargetKind,
)
from mkkdumprd.errors import ConfigError, UsageError

__all__ = ["POLICY_HELP", "SPEC_FORMS", "SPEC_HELP", "apply_target", "apply_targets",
           "parse_target_spec"]

SPEC_FORMS = (
    "local[:DEVICE][:PATH], FSTYPE:DEVICE[:PATH] (FSTYPE: " + "|".join(LOCAL_FSTYPES) + "), "
    "raw:DEVICE, nfs[:SERVER:/EXPORT[/PATH]], nfs:SERVER:/EXPORT:/PATH, "
    "ssh[:USER@HOST[:PATH]]"
)

SPEC_HELP = (
    "Dump target, overriding kdump.conf's: local[:DEVICE][:PATH] | raw:DEVICE | "
    "nfs[:SERVER:/EXPORT[/PATH]] | ssh[:USER@HOST[:PATH]]; also FSTYPE:DEVICE[:PATH] "
    "(ext4, xfs, ...). DEVICE is /dev/..., UUID=, LABEL= or PARTUUID=. For nfs the "
    "first component after the server is the export and the rest the dump path "
    "(nfs:srv:/export/crash mounts srv:/export, dumps into /crash); write "
    "nfs:srv:/srv/nfs:/crash for a longer export. A bare nfs, ssh or local keeps the "
    "file's server or device. Give it several times (with --dump-policy fallback or all) "
    "for several targets, tried in the order given."
)



def _fail(spec: str, why: str) -> UsageError:
    return UsageError(f"--target {spec!r}: {why}; accepted forms: {SPEC_FORMS}")


def parse_target_spec(spec: str) -> tuple[Target, str | None]:
    """The target and the path override (None: keep the config's path)."""
    bad = values.bad_char(spec)
    if bad:
        raise _fail(spec, f"contains {bad}")
    if "#" in spec:
        raise _fail(spec, "'#' cannot be used (kdump.conf would read it as a comment)")
    kind, _, rest = spec.partition(":")
    if kind == "local":
        return _local(spec, rest, None)
    if kind in LOCAL_FSTYPES:
        if not rest:
            raise _fail(spec, f"{kind} needs a device")
        return _local(spec, rest, kind)
    if kind == "raw":
        if not rest:
            raise _fail(spec, "raw needs a device")
        if ":/" in rest:
            raise _fail(spec, "a raw target takes no path (the dump goes onto the device)")
        _check(spec, values.check_device(rest))
        return Target(TargetKind.RAW, device=rest), None
    if kind in ("nfs", "nfs4"):
        return _nfs(spec, rest)
    if kind == "ssh":
        return _ssh(spec, rest)
    raise _fail(spec, f"unknown target type {kind!r}")


def _check(spec: str, err: str | None) -> None:
    if err:
        raise _fail(spec, err)


def _path(spec: str, path: str) -> str:
    if not path.startswith("/"):
        raise _fail(spec, f"the path {path!r} must be absolute")
    err = values.check_confined_path("the path", path)
    if err:
        raise _fail(spec, err)
    return path


def _local(spec: str, rest: str, fstype: str | None) -> tuple[Target, str | None]:
    if not rest:
        return Target(TargetKind.LOCAL), None
    if rest.startswith(":"):
        return Target(TargetKind.LOCAL), _path(spec, rest[1:])
    cut = rest.find(":/")
    device, path = (rest, None) if cut < 0 else (rest[:cut], rest[cut + 1:])
    if ":" in device and "/" in device.rsplit(":", 1)[1]:
        raise _fail(spec, f"the path {device.rsplit(':', 1)[1]!r} must be absolute")
    is_device = device.startswith(("/dev/", "UUID=", "LABEL=", "PARTUUID="))
    if not is_device and fstype is None and path is None and device.startswith("/"):
        return Target(TargetKind.LOCAL), _path(spec, device)
    _check(spec, values.check_device(device))
    return (Target(TargetKind.LOCAL, device=device, fstype=fstype),
            None if path is None else _path(spec, path))


def _nfs(spec: str, rest: str) -> tuple[Target, str | None]:
    if not rest:
        return Target(TargetKind.NFS), None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise _fail(spec, "'[' without ']'")
        server, sep, tail = rest[:close + 1], rest[close + 1:close + 2], rest[close + 2:]
    else:
        server, sep, tail = rest.partition(":")
    if not sep or not tail.startswith("/"):
        raise _fail(spec, "nfs needs SERVER:/EXPORT")
    if ":" in tail:
        export, _, path = tail.partition(":")
        path_override: str | None = _path(spec, path)
    else:
        parts = tail.strip("/").split("/", 1)
        export = "/" + parts[0]
        path_override = "/" + parts[1].strip("/") if len(parts) > 1 and parts[1].strip("/") \
            else None
    value = f"{server}:{export.rstrip('/') or '/'}"
    split = values.split_nfs(value)
    if isinstance(split, str):
        raise _fail(spec, split)
    return Target(TargetKind.NFS, server=value), path_override


def _ssh(spec: str, rest: str) -> tuple[Target, str | None]:
    if not rest:
        return Target(TargetKind.SSH), None
    cut = rest.find(":/")
    server, path = (rest, None) if cut < 0 else (rest[:cut], rest[cut + 1:])
    user, at, host = server.partition("@")
    if at and host.startswith("[") and host.endswith("]"):
        server = f"{user}@{host[1:-1]}"
    elif path is None and host.count(":") == 1:
        raise _fail(spec, f"the path {host.split(':')[1]!r} must be absolute")
    split = values.split_ssh(server)
    if isinstance(split, str):
        raise _fail(spec, split)
    return Target(TargetKind.SSH, server=server), None if path is None else _path(spec, path)


def apply_target(config: KdumpConfig, target: Target, path: str | None) -> KdumpConfig:
    """`config` with the command line's target (and path) in place of the file's.

    A bare nfs/ssh/local keeps the file's target of that kind; the collector is derived
    again for the new target, so the -F rule is checked again (ConfigError if broken).
    """
    old = next((t for t in config.targets if t.kind is target.kind), config.target)
    if target.kind is old.kind and target.device is None and target.server is None:
        target = old
    elif target.kind in (TargetKind.NFS, TargetKind.SSH) and target.server is None:
        form = "SERVER:/EXPORT" if target.kind is TargetKind.NFS else "USER@HOST"
        where = ("no kdump.conf was read" if config.source == KdumpConfig().source
                 else f"{config.source} has no {target.kind.value} target")
        raise UsageError(
            f"--target {target.kind.value} needs {form} because {where}; e.g. --target "
            + ("nfs:server:/export" if target.kind is TargetKind.NFS else "ssh:root@host"))
    _, _, old_checks = derive(config)
    kept = tuple(w for w in config.warnings if w not in old_checks)
    explicit = set(config.explicit) | {"target"}
    locations = tuple((k, loc) for k, loc in config.locations if k != "target")
    new = replace(config, target=target, more_targets=(), explicit=frozenset(explicit),
                  locations=locations)
    if path is not None:
        new = replace(new, path=path, explicit=frozenset(explicit | {"path"}),
                      locations=tuple((k, loc) for k, loc in locations if k != "path"))
    derived, errors, warnings = derive(new)
    if errors:
        raise ConfigError([(d.where, f"{d.message} (target from --target)") for d in errors])
    return replace(derived, warnings=kept + tuple(warnings))


def apply_targets(config: KdumpConfig, specs: list[str],
                  policy: str | None) -> KdumpConfig:
    """`config` with the command line's targets (`--target`, in order) and `--dump-policy`.

    No spec keeps the file's targets (only the policy may change). Several specs need a
    policy other than single; the dump path, when specs give one, must be the same for all.
    """
    chosen = config.dump_policy if policy is None else DumpPolicy(policy)
    if not specs:
        if chosen is DumpPolicy.SINGLE and config.more_targets:
            where = config.more_targets[0].where
            raise UsageError(f"--dump-policy single: {config.source} lists "
                             f"{len(config.targets)} targets (the second at {where}); keep one "
                             "or use --dump-policy fallback or all")
        return replace(config, dump_policy=chosen,
                       explicit=config.explicit | ({"dump_policy"} if policy else set()))
    if len(specs) > 1 and chosen is DumpPolicy.SINGLE:
        raise UsageError(f"--target is given {len(specs)} times but the dump policy is single; "
                         "add --dump-policy fallback (try them in order) or --dump-policy all "
                         "(dump to each)")
    parsed = [parse_target_spec(spec) for spec in specs]
    paths = {path for _, path in parsed if path is not None}
    if len(paths) > 1:
        shown = ", ".join(sorted(paths))
        raise UsageError(f"the --target options give different dump paths ({shown}); one "
                         "path applies to every target")
    path = next(iter(paths), None)
    firsts = [apply_target(config, target, path) for target, _ in parsed]
    new = replace(firsts[0], more_targets=tuple(c.target for c in firsts[1:]),
                  dump_policy=chosen)
    if policy is not None:
        new = replace(new, explicit=new.explicit | {"dump_policy"},
                      locations=tuple((k, w) for k, w in new.locations if k != "dump_policy"))
    keys = [f"{t.kind.value} {t.device} {t.server}" for t in new.targets]
    if len(set(keys)) != len(keys):
        raise UsageError("the same dump target is given twice with --target; give each once")
    derived, errors, warnings = derive(new)
    if errors:
        raise ConfigError([(d.where, f"{d.message} (targets from --target)") for d in errors])
    kept = tuple(w for w in firsts[0].warnings if w not in warnings)
    return replace(derived, warnings=kept + tuple(warnings))
