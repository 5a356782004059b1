"""Is an existing capture image current? Decided by content, not by mtime.

The image's manifest (assemble/manifest.py) names every input with its sha256: each file
copied in (kernel modules, binaries, libraries, firmware) and each file that shaped it
(kdump.conf, modules.d, templates, the kernel image, depmod's index), plus the build
options and mkkdumprd's version. The check compares them with the host now, stat first:
a file whose (size, mtime_ns, inode) matches the build cache's record is not read again
(assemble/digests.py); any other file is hashed. For host-only builds the dump target is
resolved again, since a UUID or filesystem type can change without any file in the
manifest changing.

Whether the check runs at all (a missing image, --force, kdump.conf's force_rebuild and
force_no_rebuild) is the rebuild policy's: assemble/rebuild_policy.py. Whether the file on
disk is an intact mkkdumprd image is decided in one place here: inspect_image().
A run of `mkkdumprd build` that this check found current leaves a stamp of everything it
observed; the next identical run replays it instead of importing this (mkkdumprd/uptodate/).

Not seen by this check (a rebuild with --force covers them): host-only discovery that
reads /sys or the routing table (a replaced NIC or disk controller), an optional
binary installed since the build, and a changed iSCSI CHAP secret (the manifest holds
nothing derived from secrets; a changed target, portal, LUN or CHAP on/off is seen in the
stack line). Running hardware watchdogs are seen (as kdumpctl does):
one started or stopped since a host-only build makes the image stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd import __version__, json_input
from mkkdumprd.assemble.manifest import (
    MANIFEST_PATH,
    MANIFEST_VERSION,
    request_record,
    shaping_inputs,
    target_dict,
)
from mkkdumprd.errors import MkkdumprdError
from mkkdumprd.image.integrity import verify as verify_image

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest
    from mkkdumprd.assemble.cached import BuildCache

_MANIFEST_NAME = MANIFEST_PATH.lstrip("/").encode()


@dataclass(frozen=True)
class Freshness:
    up_to_date: bool
    reasons: tuple[str, ...]    # why it must be rebuilt (or why it was not checked)
    foreign: bool = False       # the file exists but holds no mkkdumprd manifest


# ---- the check -----------------------------------------------------------------------------

def check_fresh(req: BuildRequest, image: Path, cache: BuildCache | None = None) -> Freshness:
    """Whether `image` holds what a build of `req` would produce now, with the reasons if not.

    Only the comparison: whether to look at all (kdump.conf's force flags, --force) is the
    rebuild policy's (assemble/rebuild_policy.py). `cache`: the run's build cache (its
    digests spare reading unchanged files); one is opened here when none is given.
    """
    from mkkdumprd.assemble.cached import opened

    image = Path(image)
    on_disk = inspect_image(image)
    if not on_disk.exists:
        return Freshness(False, (f"{image} does not exist",))
    manifest = on_disk.manifest
    if manifest is None:
        return Freshness(False, (f"{image} holds no mkkdumprd manifest",), foreign=True)
    if on_disk.damage is not None:
        return Freshness(False, (on_disk.damage,))
    if manifest.get("version") != __version__:
        return Freshness(False, (f"mkkdumprd version changed ({manifest.get('version')} → "
                                 f"{__version__})",))
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        return Freshness(False, ("the image's manifest is from an older format",))
    reasons = _request_changes(manifest.get("request"), request_record(req))
    with opened(cache) as digests:
        reasons += _input_changes(manifest, shaping_inputs(req), digests)
    if req.hostonly and not reasons:
        reasons += _target_changes(req, manifest)
    if req.hostonly and not reasons:
        reasons += _watchdog_changes(req, manifest)
    return Freshness(not reasons, tuple(reasons))


@dataclass(frozen=True)
class OnDisk:
    exists: bool
    manifest: dict[str, Any] | None     # None: no mkkdumprd manifest (a foreign file)
    damage: str | None = None           # an image of ours that is not what its build wrote


def inspect_image(image: Path) -> OnDisk:
    """What the file at `image` is: the one place that decides whether it is an intact
    mkkdumprd image (a readable manifest, and every byte as its build recorded it)."""
    if not image.is_file():
        return OnDisk(False, None)
    manifest = read_manifest(image)
    if manifest is None:
        return OnDisk(True, None)
    return OnDisk(True, manifest, verify_image(image))


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
                   digests: BuildCache) -> list[str]:
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
        from mkkdumprd.storage.discover import with_stack

        target, _ = resolve_target(req.config, req.machine, True)
        target = with_stack(target, req.machine, True)
    except MkkdumprdError as exc:
        return [f"the dump target cannot be resolved now ({exc})"]
    old = (manifest.get("config") or {}).get("target") or {}
    now = target_dict(target)
    changed = [k for k, v in now.items() if old.get(k) != v]
    if changed:
        return [f"the dump target changed on this host ({', '.join(changed)}: "
                f"{', '.join(_show(now[k]) for k in changed)})"]
    return []


def _watchdog_changes(req: BuildRequest, manifest: Mapping[str, Any]) -> list[str]:
    """A hardware watchdog started or stopped since the build, or its driver is not in the
    image (kdumpctl's check_drivers_modified does the same for watchdog drivers)."""
    from mkkdumprd import watchdog

    dogs = watchdog.running(req.machine)
    fed = "watchdog" in (manifest.get("modules") or [])
    names = ", ".join(f"{w.name} ({w.identity})" for w in dogs)
    if dogs and not fed:
        return [f"a hardware watchdog runs now ({names}) and the image does not feed it"]
    if fed and not dogs:
        return ["no hardware watchdog runs now; the image was built to feed one"]
    kmods = set(manifest.get("kernel_modules") or [])
    missing = [m for w in dogs for m in w.modules if m not in kmods]
    if missing:
        return [f"the image lacks the driver of the running watchdog ({', '.join(missing)})"]
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
