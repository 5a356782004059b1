"""The build manifest (/etc/mkkdumprd/manifest.json) and the normalised /etc/kdump.conf.

The manifest says what went into the image and why: the resolved configuration, the
modules.d entries, kernel modules and binaries, every image path with its reason (read by
`mkkdumprd ls --why`), and the host inputs with their sha256, so that a later run can tell
whether the image is stale without trusting mtimes. It holds no time stamps, so the same
inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mkkdumprd.build.target import ResolvedTarget
from mkkdumprd.config.model import KdumpConfig, TargetKind
from mkkdumprd.image.spec import Entry, ImageSpec, data_entry

MANIFEST_PATH = "/etc/mkkdumprd/manifest.json"
MANIFEST_VERSION = 1
_REASON = "build manifest: inputs, modules and why each entry is here"


def kdump_conf_text(config: KdumpConfig, target: ResolvedTarget) -> str:
    """kdump.conf as the image uses it: the target as the capture kernel finds it."""
    lines = [f"# resolved by mkkdumprd from {config.source}"]
    if target.kind is TargetKind.LOCAL:
        if target.fstype:
            lines.append(f"{target.fstype} {target.device}")
        else:
            lines.append(f"# filesystem type unknown; device {target.device}")
    elif target.kind is TargetKind.RAW:
        lines.append(f"raw {target.device}")
    else:
        lines.append(f"{target.kind.value} {target.server}")
    if target.kind is not TargetKind.RAW:
        lines.append(f"path {target.path}")
    lines.append(f"core_collector {' '.join(config.core_collector)}")
    if target.kind is TargetKind.SSH:
        lines.append(f"sshkey {config.sshkey}")
    if config.kdump_pre:
        lines.append(f"kdump_pre {config.kdump_pre}")
    if config.kdump_post:
        lines.append(f"kdump_post {config.kdump_post}")
    if config.extra_bins:
        lines.append(f"extra_bins {' '.join(config.extra_bins)}")
    if config.extra_modules:
        lines.append(f"extra_modules {' '.join(config.extra_modules)}")
    lines.append(f"failure_action {config.failure_action.value}")
    lines.append(f"final_action {config.final_action.value}")
    return "\n".join(lines) + "\n"


def config_dict(config: KdumpConfig, target: ResolvedTarget) -> dict[str, Any]:
    return {
        "source": config.source,
        "target": {
            "kind": target.kind.value,
            "device": target.device,
            "fstype": target.fstype,
            "server": target.server,
            "path": target.path,
        },
        "configured_target": {
            "device": config.target.device,
            "fstype": config.target.fstype,
            "server": config.target.server,
        },
        "path": config.path,
        "core_collector": list(config.core_collector),
        "sshkey": config.sshkey,
        "kdump_pre": config.kdump_pre,
        "kdump_post": config.kdump_post,
        "extra_bins": list(config.extra_bins),
        "extra_modules": list(config.extra_modules),
        "failure_action": config.failure_action.value,
        "final_action": config.final_action.value,
        "add_drivers": list(config.add_drivers),
        "omit_drivers": list(config.omit_drivers),
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(spec: ImageSpec, *, version: str, kver: str, arch: str,
                   config: KdumpConfig, target: ResolvedTarget, modules: Sequence[str],
                   kernel_modules: Sequence[str], binaries: Sequence[str],
                   extra_inputs: Iterable[Path] = ()) -> dict[str, Any]:
    """The manifest for `spec` (which must not hold the manifest yet)."""
    sources = sorted({str(e.source) for e in spec if e.source is not None}
                     | {str(p) for p in extra_inputs})
    inputs = {s: sha256_file(Path(s)) for s in sources}
    entries = {str(e.path): e.reason for e in spec.complete()}
    entries.setdefault("/etc/mkkdumprd", "parent directory")
    entries[MANIFEST_PATH] = _REASON
    return {
        "version": version,
        "manifest_version": MANIFEST_VERSION,
        "kver": kver,
        "arch": arch,
        "config": config_dict(config, target),
        "modules": list(modules),
        "kernel_modules": list(kernel_modules),
        "binaries": list(binaries),
        "inputs": inputs,
        "entries": dict(sorted(entries.items(), key=lambda kv: kv[0].encode())),
    }


def manifest_entry(manifest: dict[str, Any]) -> Entry:
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    return data_entry(MANIFEST_PATH, text, _REASON, mode=0o644)
