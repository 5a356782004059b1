"""The config written back out: as kdump.conf (`config show`, the image's /etc/kdump.conf)
and as JSON data.

Both texts are made from the directive table (config/directives.py) with the quoting of
config/syntax.py, so they parse back to the same settings (tests prove it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mkkdumprd.config import directives
from mkkdumprd.config.directives import target_as_dict
from mkkdumprd.config.model import Diagnostic, KdumpConfig, Target, TargetKind
from mkkdumprd.config.values import bad_char

__all__ = ["capture_conf", "config_as_dict", "diagnostic_as_dict", "render_kdump_conf",
           "target_as_dict"]

DEFAULT_MARK = "  # default"


def render_kdump_conf(config: KdumpConfig) -> str:
    """Every setting, defaults included and marked `# default`, in kdump.conf syntax."""
    out = [
        "# Effective kdump configuration, as mkkdumprd reads "
        + (config.source if config.source != "<defaults>" else "Fedora's defaults (no file)"),
        "# Lines marked '# default' were not in the file: they show the value that applies.",
    ]
    for d in directives.SETTINGS:
        assert d.write is not None
        line = d.write(config)
        if line is None:
            out.append(d.unset(config))
        else:
            out.append(line if d.key in config.explicit else line + DEFAULT_MARK)
    return "\n".join(out) + "\n"


def capture_conf(config: KdumpConfig, kind: TargetKind, *, device: str | None,
                 fstype: str | None, server: str | None, path: str,
                 more: tuple[Target, ...] = ()) -> str:
    """kdump.conf as the capture image holds it: the target as the capture kernel finds it
    (`device`, `fstype`, `server`, `path`) and the settings that apply to it at dump time;
    `more`: the further targets, as resolved, which the dump tries after it (dump_policy).

    Raises UsageError for a value that kdump.conf syntax cannot hold ('#', control
    characters), rather than write a file that reads back differently.
    """
    source = config.source
    if bad_char(source):
        source = source.encode("unicode_escape").decode("ascii")
    resolved = replace(config, path=path, more_targets=more,
                       target=Target(kind, device=device, fstype=fstype, server=server))
    out = [f"# resolved by mkkdumprd from {source}"]
    for d in directives.SETTINGS:
        if kind not in d.capture:
            continue
        assert d.write is not None
        line = d.write(resolved)
        if line is not None:
            out.append(line)
        elif d.key == "target":
            out.append(f"# filesystem type unknown; device {device}")
        if d.key == "target" and more:
            out.append(directives.write_dump_policy(resolved))
    return "\n".join(out) + "\n"


def config_as_dict(config: KdumpConfig) -> dict[str, Any]:
    return {
        "source": config.source,
        **directives.record(config),
        "defaults": sorted(frozenset(d.key for d in directives.SETTINGS
                                     if d.key not in directives.RECORDED_WHEN_SET
                                     or (d.record is not None and d.record(config)))
                           - config.explicit),
    }


def diagnostic_as_dict(diag: Diagnostic, source: str) -> dict[str, Any]:
    return {
        "file": diag.where.file if diag.where else source,
        "line": diag.where.line if diag.where else None,
        "message": diag.message,
        "text": diag.text,
    }
