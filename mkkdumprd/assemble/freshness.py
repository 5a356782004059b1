"""Is an existing capture image current? Decided by content, not by mtime.

The image's manifest (assemble/manifest.py) names every input with its sha256: each file
copied in (kernel modules, binaries, libraries, firmware) and each file that shaped it
(kdump.conf, modules.d, templates, the kernel image, depmod's index), plus the build
options and mkkdumprd's version. The check compares them with the host now, stat first:
a file whose (size, mtime_ns, inode) matches the build cache's record is not read again
(assemble/digests.py); any other file is hashed. For host-only builds the dump target is
resolved again, since a UUID or filesystem type can change without any file in the
manifest changing.

Order, as kdumpctl's is_system_modified: a missing image is rebuilt; then kdump.conf's
force_no_rebuild (never) and force_rebuild (always) decide; then the comparison.

Not seen by this check (a rebuild with --force covers them): host-only discovery that
reads /sys or the routing table (a replaced NIC or disk controller), and an optional
binary installed since the build.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd import __version__, json_input
from mkkdumprd.assemble.manifest import MANIFEST_PATH, MANIFEST_VERSION, target_dict
from mkkdumprd.config.directives import NOT_IN_IMAGE
from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.errors import MkkdumprdError
from mkkdumprd.image.integrity import verify as verify_image
from mkkdumprd.resources import data_dir

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest
    from mkkdumprd.assemble.digests import Digests

_MANIFEST_NAME = MANIFEST_PATH.lstrip("/").encode()
_KMOD_INDEX = ("modules.dep", "modules.alias", "modules.softdep", "modules.builtin",
               "modules.builtin.modinfo", "modules.order")


@dataclass(frozen=True)
class Freshness:
    up_to_date: bool
    reasons: tuple[str, ...]    # why it must be rebuilt (or why it was not checked)
    foreign: bool = False       # the file exists but holds no mkkdumprd manifest


# ---- what a build records ------------------------------------------------------------------

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
    """The build options that change the image (not the output path, not --force)."""
    sde = req.source_date_epoch
    return {
        "kver": req.kver,
        "kmoddir": str(Path(req.kmoddir).absolute()),
        "arch": req.arch,
        "sysroot": str(req.view.root),
        "system": str(req.system.root),
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
    }


def kernel_image(req: BuildRequest) -> Path | None:
    """The kernel the image is built for, when it can be found beside its modules."""
    kmoddir = Path(req.kmoddir)
    cands = [kmoddir / "vmlinuz", req.view.path(f"/boot/vmlinuz-{req.kver}")]
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


# ---- the check -----------------------------------------------------------------------------

def check_fresh(req: BuildRequest, image: Path, digests: Digests | None = None) -> Freshness:
    """Whether `image` is what a build of `req` would produce now, with the reasons if not."""
    from mkkdumprd.assemble.digests import Digests

    image = Path(image)
    config = req.config
    if not image.is_file():
        return Freshness(False, (f"{image} does not exist",))
    if config.force_no_rebuild:
        return Freshness(True, (f"force_no_rebuild is set in {config.source}: not checked",))
    if config.force_rebuild:
        return Freshness(False, (f"force_rebuild is set in {config.source}",))
    if req.force:
        return Freshness(False, ("a rebuild is forced",))
    manifest = read_manifest(image)
    if manifest is None:
        return Freshness(False, (f"{image} holds no mkkdumprd manifest",), foreign=True)
    damage = verify_image(image)
    if damage is not None:
        return Freshness(False, (damage,))
    if manifest.get("version") != __version__:
        return Freshness(False, (f"mkkdumprd version changed ({manifest.get('version')} → "
                                 f"{__version__})",))
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        return Freshness(False, ("the image's manifest is from an older format",))
    reasons = _request_changes(manifest.get("request"), request_record(req))
    digests = digests if digests is not None else Digests.load()
    reasons += _input_changes(manifest, shaping_inputs(req), digests)
    digests.save()
    if req.hostonly and not reasons:
        reasons += _target_changes(req, manifest)
    return Freshness(not reasons, tuple(reasons))


def _request_changes(old: object, new: dict[str, Any]) -> list[str]:
    if not isinstance(old, dict):
        return ["the image records no build options"]
    out: list[str] = []
    for key, value in new.items():
        if key == "config":
            continue
        if old.get(key) != value:
            out.append(f"build option {key} changed ({_show(old.get(key))} → {_show(value)})")
    old_conf = old.get("config")
    new_conf = new["config"]
    if not isinstance(old_conf, dict):
        out.append("config changed: the image records no configuration")
    else:
        for key, value in new_conf.items():
            if old_conf.get(key) != value:
                out.append(f"config changed: {key}")
    return out


def _show(v: object) -> str:
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "none"
    return "none" if v is None or v == "" else str(v)


def _input_changes(manifest: Mapping[str, Any], shaping: Mapping[str, str],
                   digests: Digests) -> list[str]:
    inputs = manifest.get("inputs")
    labels = manifest.get("input_labels")
    if not isinstance(inputs, dict) or not isinstance(labels, dict):
        return ["the image's manifest lists no inputs"]
    out: list[str] = []
    for path, old in inputs.items():
        label = str(labels.get(path) or f"file {path}")
        now = digests.sha256(path)
        if now == old:
            continue
        if label == "config":
            out.append(f"config {'changed' if now else 'removed'}: {path}")
        elif now is None:
            out.append(f"{label} is gone ({path})")
        else:
            out.append(f"{label} changed")
    for path, label in shaping.items():
        if path not in inputs:
            out.append(f"config added: {path}" if label == "config" else f"{label} added")
    return out


def _target_changes(req: BuildRequest, manifest: Mapping[str, Any]) -> list[str]:
    from mkkdumprd.assemble.target import resolve_target

    try:
        target, _ = resolve_target(req.config, req.system, True)
    except MkkdumprdError as exc:
        return [f"the dump target cannot be resolved now ({exc})"]
    old = (manifest.get("config") or {}).get("target") or {}
    now = target_dict(target)
    changed = [k for k, v in now.items() if old.get(k) != v]
    if changed:
        return [f"the dump target changed on this host ({', '.join(changed)}: "
                f"{', '.join(_show(now[k]) for k in changed)})"]
    return []


# ---- reading the manifest back -------------------------------------------------------------

def read_manifest(image: Path) -> dict[str, Any] | None:
    """The manifest stored in `image`, or None when there is none (or it is unreadable).

    Entries are stored in bytewise path order, so the manifest comes early: only the
    first few kilobytes are decompressed.
    """
    try:
        raw = _find_member(image, _MANIFEST_NAME)
    except Exception:  # any damage (OSError, EOFError, zstd/lzma errors): no manifest
        raw = None
    if raw is None:
        return None
    try:
        doc = json_input.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _find_member(image: Path, name: bytes) -> bytes | None:
    # The bounded image reader: a damaged or hostile image gives an error, never a hang
    # or a huge allocation (int(x, 16) on raw header fields took "-1" and "FFFFFFFF").
    from mkkdumprd.image.reader import read_sorted_member

    return read_sorted_member(image, "/" + name.decode())
