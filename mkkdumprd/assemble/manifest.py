"""The build manifest (/etc/mkkdumprd/manifest.json) and the normalised /etc/kdump.conf.

The manifest says what went into the image and why: the resolved configuration, the
modules.d entries, kernel modules and binaries, every image path with its reason (read by
`mkkdumprd ls --why`), the build options, and every host input with its sha256 (files
copied in, and kdump.conf, modules.d, templates and the kernel image, which shape it), so
that a later run can tell whether the image is stale without trusting mtimes
(assemble/freshness.py). It holds no time stamps, inode numbers or other stat data, so the
same inputs give the same bytes on any machine; the stat data that spares re-hashing
unchanged files lives in the build cache (assemble/digests.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.errors import OperationError
from mkkdumprd.image.spec import Entry, ImageSpec, data_entry

if TYPE_CHECKING:
    from mkkdumprd.assemble.target import ResolvedTarget

MANIFEST_PATH = "/etc/mkkdumprd/manifest.json"
MANIFEST_VERSION = 2
_REASON = "build manifest: inputs, modules and why each entry is here"


def kdump_conf_text(config: KdumpConfig, target: ResolvedTarget) -> str:
    """kdump.conf as the image uses it: the target as the capture kernel finds it."""
    from mkkdumprd.config.render import capture_conf

    return capture_conf(config, target.kind, device=target.device, fstype=target.fstype,
                        server=target.server, path=target.path)


def target_dict(target: ResolvedTarget) -> dict[str, Any]:
    """The dump target as this build resolved it (also what freshness compares with)."""
    return {"kind": target.kind.value, "device": target.device, "fstype": target.fstype,
            "server": target.server, "path": target.path}


def config_dict(config: KdumpConfig, target: ResolvedTarget) -> dict[str, Any]:
    """The configuration in the manifest: as `config check --json` shows it, plus the target
    as resolved for the capture kernel (`configured_target` is what kdump.conf said)."""
    from mkkdumprd.config.render import config_as_dict, target_as_dict

    data = config_as_dict(config)
    data.pop("defaults")
    return {**data, "target": target_dict(target),
            "configured_target": target_as_dict(config.target)}


def sha256_file(path: Path) -> str:
    from mkkdumprd.assemble.digests import sha256_file as digest

    return digest(path)


def input_label(reason: str, source: str) -> str:
    """How a changed input is named to the user: 'kernel module ext4', 'library /x/y'."""
    if reason.startswith("kernel module "):
        return reason.split(" (", 1)[0]
    if reason.startswith("library"):
        return f"library {source}"
    if reason.startswith("firmware"):
        return f"firmware {source}"
    if reason.startswith(("binary", "busybox", "host tool")):
        return f"binary {source}"
    return f"file {source}"


def build_manifest(spec: ImageSpec, *, version: str, kver: str, arch: str,
                   config: KdumpConfig, target: ResolvedTarget, modules: Sequence[str],
                   kernel_modules: Sequence[str], binaries: Sequence[str],
                   extra_inputs: Iterable[Path] | Mapping[str, str] = (),
                   request: Mapping[str, Any] | None = None,
                   digest: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The manifest for `spec` (which must not hold the manifest yet).

    `extra_inputs`: host files that shaped the image without being copied into it
    (kdump.conf, modules.d, templates, the kernel), with their labels; `request`: the
    build options as assemble/freshness.py compares them; `digest`: sha256 of a path
    (reusing known digests), None for a missing file.
    """
    labels: dict[str, str] = {}
    for e in spec:
        if e.source is not None:
            labels.setdefault(str(e.source), input_label(e.reason, str(e.source)))
    if isinstance(extra_inputs, Mapping):
        for path, label in extra_inputs.items():
            labels.setdefault(str(path), label)
    else:
        for p in extra_inputs:
            labels.setdefault(str(p), f"file {p}")
    inputs: dict[str, str] = {}
    for s in sorted(labels):
        h = digest(s) if digest is not None else sha256_file(Path(s))
        if h is None:
            raise OperationError(f"cannot read {s} ({labels[s]}) while recording the build "
                                 f"inputs; check that it exists and is readable")
        inputs[s] = h
    entries = {str(e.path): e.reason for e in spec.complete()}
    entries.setdefault("/etc/mkkdumprd", "parent directory")
    entries[MANIFEST_PATH] = _REASON
    return {
        "version": version,
        "manifest_version": MANIFEST_VERSION,
        "kver": kver,
        "arch": arch,
        "request": dict(request or {}),
        "config": config_dict(config, target),
        "modules": list(modules),
        "kernel_modules": list(kernel_modules),
        "binaries": list(binaries),
        "inputs": inputs,
        "input_labels": {s: labels[s] for s in sorted(labels)},
        "entries": dict(sorted(entries.items(), key=lambda kv: kv[0].encode())),
    }


def manifest_entry(manifest: dict[str, Any]) -> Entry:
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    return data_entry(MANIFEST_PATH, text, _REASON, mode=0o644)
