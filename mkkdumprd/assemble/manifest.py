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
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd.config.directives import NOT_IN_IMAGE
from mkkdumprd.config.model import KdumpConfig, Target
from mkkdumprd.errors import OperationError
from mkkdumprd.image.spec import Entry, ImageSpec, data_entry
from mkkdumprd.resources import data_dir

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest
    from mkkdumprd.assemble.target import ResolvedTarget

MANIFEST_PATH = "/etc/mkkdumprd/manifest.json"
MANIFEST_VERSION = 2
_REASON = "build manifest: inputs, modules and why each entry is here"
_KMOD_INDEX = ("modules.dep", "modules.alias", "modules.softdep", "modules.builtin",
               "modules.builtin.modinfo", "modules.order")


def kdump_conf_text(config: KdumpConfig, target: ResolvedTarget,
                    more: Sequence[ResolvedTarget] = ()) -> str:
    """kdump.conf as the image uses it: the targets as the capture kernel finds them."""
    from mkkdumprd.config.render import capture_conf

    return capture_conf(config, target.kind, device=target.device, fstype=target.fstype,
                        server=target.server, path=target.path,
                        more=tuple(Target(t.kind, device=t.device, fstype=t.fstype,
                                          server=t.server) for t in more))


def target_dict(target: ResolvedTarget) -> dict[str, Any]:
    """The dump target as this build resolved it (also what freshness compares with)."""
    out: dict[str, Any] = {"kind": target.kind.value, "device": target.device,
                           "fstype": target.fstype, "server": target.server,
                           "path": target.path}
    # Only when present, so images of plain targets keep their manifest byte for byte.
    if target.mount_options:
        out["mount_options"] = target.mount_options
    if target.stack is not None and target.stack.modules():
        out["stack"] = target.stack.describe()
        luks = target.stack.luks_uuids()
        if luks:
            out["luks"] = luks
    return out


def config_dict(config: KdumpConfig, target: ResolvedTarget) -> dict[str, Any]:
    """The configuration in the manifest: as `config check --json` shows it, plus the target
    as resolved for the capture kernel (`configured_target` is what kdump.conf said)."""
    from mkkdumprd.config.render import config_as_dict, target_as_dict

    data = config_as_dict(config)
    data.pop("defaults")
    return {**data, "target": target_dict(target),
            "configured_target": target_as_dict(config.target)}


# ---- what a build records about its request (and freshness compares) ---------------------

# Not compared: where the config came from, which settings were defaults, and the settings
# that do not change what goes into the image (config/directives.py marks them).
_NOT_IN_IMAGE = ("source", "defaults", *NOT_IN_IMAGE)


def config_record(config: KdumpConfig) -> dict[str, Any]:
    """The configuration as given (before the target is resolved on the host)."""
    from mkkdumprd.config.render import config_as_dict

    data = config_as_dict(config)
    for key in _NOT_IN_IMAGE:
        data.pop(key)
    return data


def request_record(req: BuildRequest) -> dict[str, Any]:
    """The build options that change the image (not the output path)."""
    sde = req.source_date_epoch
    return {
        "kver": req.kver,
        "kmoddir": str(Path(req.kmoddir).absolute()),
        "arch": req.arch,
        "sysroot": str(req.sysroot.root),
        "system": str(req.machine.root),
        "hostonly": req.hostonly,
        "add_drivers": list(req.add_drivers),
        "omit_drivers": list(req.omit_drivers),
        "compression": req.compression.value,
        "level": req.level,
        "timeout": req.timeout,
        "ip": req.ip,
        "modules_dir": str(req.modules_dir or data_dir("modules.d")),
        "templates_dir": str(req.templates_dir or data_dir("templates")),
        "source_date_epoch": str(sde) if sde is not None
        else os.environ.get("SOURCE_DATE_EPOCH", "").strip(),
        "config": config_record(req.config),
        **({"add_modules": list(req.add_modules)} if req.add_modules else {}),
    }


def kernel_image(req: BuildRequest) -> Path | None:
    """The kernel the image is built for, when it can be found beside its modules."""
    kmoddir = Path(req.kmoddir)
    cands = [kmoddir / "vmlinuz", req.sysroot.path(f"/boot/vmlinuz-{req.kver}")]
    if len(kmoddir.parts) > 3 and kmoddir.parent.name == "modules":
        # ROOT/lib/modules/KVER (or ROOT/usr/lib/modules/KVER): ROOT/boot/vmlinuz-KVER
        lib = kmoddir.parent.parent
        root = lib.parent.parent if lib.parent.name == "usr" else lib.parent
        cands.append(root / "boot" / f"vmlinuz-{req.kver}")
    return next((c for c in cands if c.is_file()), None)


def shaping_inputs(req: BuildRequest) -> dict[str, str]:
    """Host files that decide what the image holds without being copied in: path → label."""
    out: dict[str, str] = {}
    src = Path(req.config.source)
    if src.is_file():
        out[str(src)] = "config"
    kernel = kernel_image(req)
    if kernel is not None:
        out[str(kernel)] = f"kernel image {kernel}"
    for name in _KMOD_INDEX:
        p = Path(req.kmoddir) / name
        if p.is_file():
            out[str(p)] = f"kernel module index {name}"
    for base, what in ((req.modules_dir or data_dir("modules.d"), "modules.d file"),
                       (req.templates_dir or data_dir("templates"), "template")):
        for path in _files(Path(base)):
            out[str(path)] = f"{what} {path.relative_to(base)}"
    return out


def _files(base: Path) -> Iterator[Path]:
    stack = [base]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                if e.name == "__pycache__" or e.name.endswith((".pyc", "~")):
                    continue
                if e.is_dir():
                    stack.append(Path(e.path))
                elif e.is_file():
                    yield Path(e.path)


# ---- the manifest --------------------------------------------------------------------------

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
                   digest: Callable[[str], str | None]) -> dict[str, Any]:
    """The manifest for `spec` (which must not hold the manifest yet).

    `extra_inputs`: host files that shaped the image without being copied into it
    (kdump.conf, modules.d, templates, the kernel), with their labels; `request`: the
    build options as assemble/freshness.py compares them; `digest`: sha256 of a path
    (the build cache's, which reuses known digests), None for a missing file.
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
        h = digest(s)
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
