"""NFS targets: `SERVER:/EXPORT` parsing and the capture kernel's mount options.

Options come from the host's live mount of the export (/proc/self/mountinfo), else from
/etc/fstab, else `defaults` — then Fedora's rewrite (fedora-kdump-utils.md §4.6): options
naming this boot's addresses and transports are dropped (the capture kernel negotiates
its own), `ro` becomes `rw` (we write the dump), and boot-time-only options go away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host, Mount, unescape_mount_field

FSTAB = "/etc/fstab"
NFS_FSTYPES = ("nfs", "nfs4")

_DROP_KEYS = ("addr", "mountaddr", "proto", "mountproto", "clientaddr")
_DROP_WORDS = ("noauto", "nofail", "nobootwait", "auto", "_netdev")


@dataclass(frozen=True)
class NfsExport:
    host: str      # without brackets
    export: str    # absolute path on the server, no trailing slash (except "/")

    @property
    def spec(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.export}"


@dataclass(frozen=True)
class NfsMount:
    export: NfsExport
    fstype: str                   # "nfs" or "nfs4"
    options: tuple[str, ...]      # already rewritten for the capture kernel
    source: str                   # where the options came from: mountinfo, fstab, defaults

    @property
    def option_string(self) -> str:
        return ",".join(self.options)


def _norm_export(path: str) -> str:
    path = "/" + path.strip("/")
    return re.sub("/+", "/", path)


def parse_export(spec: str) -> NfsExport:
    """`host:/export`, `[v6addr]:/export` or bare IPv6 `fd00::1:/export`."""
    if spec.startswith("["):
        end = spec.find("]")
        host, rest = spec[1:end], spec[end + 1:] if end > 0 else ""
        if end < 0 or not rest.startswith(":/"):
            raise UsageError(f"NFS target {spec!r} must look like [ADDRESS]:/EXPORT")
        path = rest[1:]
    else:
        idx = spec.find(":/")
        if idx <= 0:
            raise UsageError(f"NFS target {spec!r} must look like SERVER:/EXPORT")
        host, path = spec[:idx], spec[idx + 1:]
    if not host or any(c.isspace() for c in host) or host.startswith("-"):
        raise UsageError(f"NFS target {spec!r} has no valid server name")
    return NfsExport(host.lower(), _norm_export(path))


def rewrite_options(options: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Fedora's rewrite of a host mount's options for the capture kernel."""
    out: list[str] = []
    for opt in options:
        key = opt.split("=", 1)[0]
        if key in _DROP_KEYS or opt in _DROP_WORDS or not opt:
            continue
        if opt == "ro":
            opt = "rw"
        if opt not in out:
            out.append(opt)
    return tuple(out) or ("defaults",)


def _same_export(source: str, want: NfsExport) -> bool:
    try:
        return parse_export(source) == want
    except UsageError:
        return False


def _nfs_type(fstype: str, options: tuple[str, ...]) -> str:
    if fstype == "nfs4":
        return "nfs4"
    for opt in options:
        key, _, val = opt.partition("=")
        if key in ("vers", "nfsvers") and val.startswith("4"):
            return "nfs4"
    return "nfs"


def from_mounts(mounts: list[Mount], want: NfsExport) -> NfsMount | None:
    for m in mounts:
        if m.fstype not in NFS_FSTYPES or not _same_export(m.source, want):
            continue
        # per-mount flags first (rw/ro, relatime...), then the filesystem's own options
        raw = m.options.split(",") + m.superopts.split(",")
        opts = rewrite_options(raw)
        return NfsMount(want, _nfs_type(m.fstype, opts), opts, "mountinfo")
    return None


def from_fstab(text: str, want: NfsExport) -> NfsMount | None:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[2] not in NFS_FSTYPES:
            continue
        if not _same_export(unescape_mount_field(words[0]), want):
            continue
        opts = rewrite_options(words[3].split(",") if len(words) > 3 else [])
        return NfsMount(want, _nfs_type(words[2], opts), opts, "fstab")
    return None


def capture_mount(view: Host, want: NfsExport) -> NfsMount:
    """The export's mount for the capture kernel: live mount, else fstab, else defaults."""
    found = from_mounts(view.mounts(), want) or \
        from_fstab(view.read_optional(FSTAB) or "", want)
    if found is not None:
        return found
    return NfsMount(want, "nfs", ("defaults",), "defaults")
