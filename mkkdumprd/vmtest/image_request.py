"""The build request of an image given with --image, recovered from the image itself.

An ssh image trusts only the real server's host key, so its proof boots the image rebuilt
for the stand-in (rebuild.py), and --real-target rebuilds it with a test folder as its
path: both need the request the image was built from. An image carries it: its
/etc/kdump.conf holds every setting that applies at dump time for its target (the
capture kernel reads it), and its manifest records the build's options (kernel version
and module folder, roots, host-only, drivers, compression, timeout, ip=) and the
configuration's record, from which the one image-shaping setting the capture kdump.conf
leaves out for a network target (hook_timeout) is taken. The recovered request builds
with this checkout's modules.d and templates.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest

KDUMP_CONF = "/etc/kdump.conf"


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _root(value: Any) -> Host:
    path = Path(str(value or "/"))
    return Host.this_machine() if path == Path("/") else Host(path)


def request_of_image(image: Path) -> BuildRequest:
    """The request `image` was built from, as far as it changes the image."""
    from mkkdumprd.assemble.builder import BuildRequest
    from mkkdumprd.assemble.freshness import read_manifest
    from mkkdumprd.config.kdumpconf import parse_kdump_conf_bytes
    from mkkdumprd.image.compression import Compression
    from mkkdumprd.image.reader import read_file

    man = read_manifest(image) or {}
    rec = man.get("request")
    if not isinstance(rec, dict) or not rec.get("kver") or not rec.get("kmoddir"):
        raise UsageError(f"{image} records no build request in its manifest; give "
                         "-c/--target instead of --image")
    parsed = parse_kdump_conf_bytes(read_file(image, KDUMP_CONF), f"{image}:{KDUMP_CONF}")
    if parsed.config is None:
        why = "; ".join(d.message for d in parsed.errors)
        raise UsageError(f"the kdump.conf inside {image} does not parse ({why}); give "
                         "-c/--target instead of --image")
    config = parsed.config
    recorded = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    hook = recorded.get("hook_timeout") if isinstance(recorded, dict) else None
    if isinstance(hook, int) and not isinstance(hook, bool):
        config = dataclasses.replace(config, hook_timeout=hook)
    kmoddir = Path(str(rec["kmoddir"]))
    if not kmoddir.is_dir():
        raise UsageError(f"{image} was built from the modules in {kmoddir}, which is not "
                         "here; give -c/--target (and --kmoddir) instead of --image")
    try:
        compression = Compression(str(rec.get("compression") or "zstd"))
    except ValueError:
        compression = Compression.ZSTD
    level = rec.get("level")
    timeout = rec.get("timeout")
    ip = rec.get("ip")
    extra: dict[str, Any] = {}
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        extra["timeout"] = timeout
    return BuildRequest(
        config=config, kver=str(rec["kver"]), kmoddir=kmoddir,
        sysroot=_root(rec.get("sysroot")), machine=_root(rec.get("system")),
        arch=str(rec.get("arch") or man.get("arch") or "x86_64"),
        hostonly=bool(rec.get("hostonly", True)),
        add_drivers=_strings(rec.get("add_drivers")),
        omit_drivers=_strings(rec.get("omit_drivers")),
        add_modules=_strings(rec.get("add_modules")),
        compression=compression, level=level if isinstance(level, int) else None,
        ip=ip if isinstance(ip, str) else None, **extra)
