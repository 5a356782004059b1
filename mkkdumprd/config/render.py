"""The effective config written back out: as kdump.conf (`config show`) and as JSON data.

The kdump.conf text parses back to the same configuration (tests prove it): a value gets
double quotes exactly when Fedora's reader would otherwise change it (blanks at its ends,
or quotes at both ends), and word lists are joined with shell quoting.
"""

from __future__ import annotations

import shlex
from typing import Any

from mkkdumprd.config.model import Diagnostic, KdumpConfig, Target, TargetKind
from mkkdumprd.config.values import bad_char, split_nfs, split_ssh
from mkkdumprd.errors import UsageError

DEFAULT_MARK = "  # default"


def quote_value(value: str) -> str:
    """`value` as kdump.conf text that reads back as exactly `value`."""
    if "#" in value or bad_char(value):
        raise UsageError(f"the value {value!r} cannot be written in kdump.conf syntax "
                         "('#' and control characters have no escape there)")
    stripped = value.strip(" \t")
    if stripped != value or (len(value) >= 2 and value[0] == '"' and value[-1] == '"'):
        return f'"{value}"'
    return value


def _target_line(target: Target) -> str | None:
    if target.kind is TargetKind.LOCAL:
        if target.device is None:
            return None
        if target.fstype is None:
            return None
        return f"{target.fstype} {quote_value(target.device)}"
    if target.kind is TargetKind.RAW:
        return f"raw {quote_value(target.device or '')}"
    return f"{target.kind.value} {quote_value(target.server or '')}"


def render_kdump_conf(config: KdumpConfig) -> str:
    """Every setting, defaults included and marked `# default`, in kdump.conf syntax."""
    explicit = config.explicit
    out = [
        "# Effective kdump configuration, as mkkdumprd reads "
        + (config.source if config.source != "<defaults>" else "Fedora's defaults (no file)"),
        "# Lines marked '# default' were not in the file: they show the value that applies.",
    ]

    def line(key: str, text: str) -> None:
        out.append(text if key in explicit else text + DEFAULT_MARK)

    target_line = _target_line(config.target)
    if target_line is not None:
        line("target", target_line)
    elif config.target.device is not None:
        out.append(f"# target: local device {config.target.device} (filesystem type detected "
                   "when the image is built)")
    else:
        out.append("# target: the filesystem that holds path (no target line)")
    line("path", f"path {quote_value(config.path)}")
    line("core_collector", f"core_collector {shlex.join(config.core_collector)}")
    line("sshkey", f"sshkey {quote_value(config.sshkey)}")
    for key in ("kdump_pre", "kdump_post"):
        value = getattr(config, key)
        if value is None:
            out.append(f"# {key}: none")
        else:
            line(key, f"{key} {quote_value(value)}")
    line("hook_timeout", f"hook_timeout {config.hook_timeout}")
    if config.extra_bins:
        line("extra_bins", f"extra_bins {shlex.join(config.extra_bins)}")
    else:
        out.append("# extra_bins: none")
    if config.extra_modules:
        line("extra_modules", f"extra_modules {' '.join(config.extra_modules)}")
    else:
        out.append("# extra_modules: none")
    line("failure_action", f"failure_action {config.failure_action.value}")
    line("final_action", f"final_action {config.final_action.value}")
    line("force_rebuild", f"force_rebuild {int(config.force_rebuild)}")
    line("force_no_rebuild", f"force_no_rebuild {int(config.force_no_rebuild)}")
    line("auto_reset_crashkernel",
         f"auto_reset_crashkernel {'yes' if config.auto_reset_crashkernel else 'no'}")
    drivers: list[str] = []
    for flag, names in (("--add-drivers", config.add_drivers),
                        ("--omit-drivers", config.omit_drivers)):
        if names:
            drivers += [flag, " ".join(names)]
    if drivers:
        line("dracut_args", f"dracut_args {shlex.join(drivers)}")
    else:
        out.append("# dracut_args: none")
    return "\n".join(out) + "\n"


def target_as_dict(target: Target) -> dict[str, Any]:
    data: dict[str, Any] = {"type": target.kind.value}
    if target.kind is TargetKind.LOCAL:
        data.update(fstype=target.fstype, device=target.device)
    elif target.kind is TargetKind.RAW:
        data["device"] = target.device
    elif target.kind is TargetKind.NFS:
        data["server"] = target.server
        nfs = split_nfs(target.server or "")
        if not isinstance(nfs, str):
            data.update(host=nfs[0], export=nfs[1])
    else:
        data["server"] = target.server
        ssh = split_ssh(target.server or "")
        if not isinstance(ssh, str):
            data.update(user=ssh[0], host=ssh[1])
    return data


def config_as_dict(config: KdumpConfig) -> dict[str, Any]:
    return {
        "source": config.source,
        "target": target_as_dict(config.target),
        "path": config.path,
        "core_collector": list(config.core_collector),
        "kdump_pre": config.kdump_pre,
        "kdump_post": config.kdump_post,
        "hook_timeout": config.hook_timeout,
        "extra_bins": list(config.extra_bins),
        "extra_modules": list(config.extra_modules),
        "failure_action": config.failure_action.value,
        "final_action": config.final_action.value,
        "force_rebuild": config.force_rebuild,
        "force_no_rebuild": config.force_no_rebuild,
        "add_drivers": list(config.add_drivers),
        "omit_drivers": list(config.omit_drivers),
        "sshkey": config.sshkey,
        "auto_reset_crashkernel": config.auto_reset_crashkernel,
        "defaults": sorted(_KEYS - config.explicit),
    }


_KEYS = frozenset({
    "target", "path", "core_collector", "sshkey", "kdump_pre", "kdump_post", "hook_timeout",
    "extra_bins",
    "extra_modules", "failure_action", "final_action", "force_rebuild", "force_no_rebuild",
    "dracut_args", "auto_reset_crashkernel",
})


def diagnostic_as_dict(diag: Diagnostic, source: str) -> dict[str, Any]:
    return {
        "file": diag.where.file if diag.where else source,
        "line": diag.where.line if diag.where else None,
        "message": diag.message,
        "text": diag.text,
    }
