"""Install the integration files (systemd unit, kernel hooks) where no package does it.

Distribution packages ship packaging/ directly (the unit under /usr/lib/systemd/system, the
plugin under /usr/lib/kernel/install.d). `mkkdumprd install-integration` is for a pip or
source install: it copies the same files, from the wheel's data, into the admin's places
under /etc, which systemd, kernel-install and Debian's kernel packages all read. Installing
twice changes nothing; `remove=True` takes them out again.

When the mkkdumprd being installed for is not where the hooks look (a venv), its path goes
into the unit's Exec lines and into /etc/mkkdumprd/hooks.conf as MKKDUMPRD=.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import HostView
from mkkdumprd.resources import data_dir

PACKAGED_EXE = "/usr/bin/mkkdumprd"
# Where the hooks look when hooks.conf names no MKKDUMPRD (besides their PATH).
HOOK_SEARCH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
HOOKS_CONF = PurePosixPath("/etc/mkkdumprd/hooks.conf")


class Kind(enum.Enum):
    SYSTEMD = "systemd"
    KERNEL_INSTALL = "kernel-install"
    DEBIAN = "debian"


@dataclass(frozen=True)
class Item:
    kind: Kind
    src: str                 # under packaging/
    dest: PurePosixPath
    mode: int


ITEMS = (
    Item(Kind.SYSTEMD, "systemd/mkkdumprd.service",
         PurePosixPath("/etc/systemd/system/mkkdumprd.service"), 0o644),
    Item(Kind.SYSTEMD, "systemd/mkkdumprd-generator",
         PurePosixPath("/etc/systemd/system-generators/mkkdumprd-generator"), 0o755),
    Item(Kind.KERNEL_INSTALL, "kernel-install/60-mkkdumprd.install",
         PurePosixPath("/etc/kernel/install.d/60-mkkdumprd.install"), 0o755),
    Item(Kind.DEBIAN, "debian/postinst.d/mkkdumprd",
         PurePosixPath("/etc/kernel/postinst.d/mkkdumprd"), 0o755),
    Item(Kind.DEBIAN, "debian/postrm.d/mkkdumprd",
         PurePosixPath("/etc/kernel/postrm.d/mkkdumprd"), 0o755),
)


@dataclass(frozen=True)
class Change:
    path: PurePosixPath
    action: str              # "installed", "updated", "unchanged", "removed", "absent"


def detect(host: HostView) -> tuple[Kind, ...]:
    """Which integrations this system uses."""
    found: list[Kind] = []
    if host.is_dir("/run/systemd/system") or host.is_dir("/etc/systemd/system"):
        found.append(Kind.SYSTEMD)
    if (host.is_dir("/usr/lib/kernel/install.d") or host.is_dir("/etc/kernel/install.d")
            or host.which("kernel-install") is not None):
        found.append(Kind.KERNEL_INSTALL)
    if host.is_dir("/var/lib/dpkg") or host.is_dir("/etc/kernel/postinst.d"):
        found.append(Kind.DEBIAN)
    return tuple(found)


def _source(item: Item, exe: str) -> bytes:
    path = data_dir("packaging") / item.src
    try:
        text = path.read_text()
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc.strerror}; reinstall mkkdumprd") from None
    if item.kind is Kind.SYSTEMD and exe != PACKAGED_EXE:
        text = text.replace(PACKAGED_EXE, exe)
    return text.encode()


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode)


def _hooks_conf(host: HostView, exe: str) -> Change | None:
    """Name `exe` in hooks.conf when the hooks would not find it themselves."""
    if str(PurePosixPath(exe).parent) in HOOK_SEARCH:
        return None
    path = host.path(HOOKS_CONF)
    old = path.read_text() if path.is_file() else ""
    lines = [ln for ln in old.splitlines() if not ln.strip().startswith("MKKDUMPRD=")]
    if not old:
        lines = ["# Read by mkkdumprd's kernel hooks (shell). MKKDUMPRD_HOOKS=no turns them",
                 "# off; BUILD_ARGS adds `mkkdumprd build` options (e.g. --no-hostonly)."]
    lines.append(f"MKKDUMPRD={exe}")
    new = "\n".join(lines) + "\n"
    if new == old:
        return Change(HOOKS_CONF, "unchanged")
    _write(path, new.encode(), 0o644)
    return Change(HOOKS_CONF, "updated" if old else "installed")


def install(host: HostView, kinds: tuple[Kind, ...], exe: str) -> list[Change]:
    if not PurePosixPath(exe).is_absolute():
        raise UsageError(f"--mkkdumprd {exe} must be an absolute path on the target system")
    changes: list[Change] = []
    for item in ITEMS:
        if item.kind not in kinds:
            continue
        data = _source(item, exe)
        path = host.path(item.dest)
        try:
            old = path.read_bytes() if path.is_file() else None
            if old == data and (path.stat().st_mode & 0o7777) == item.mode:
                changes.append(Change(item.dest, "unchanged"))
                continue
            _write(path, data, item.mode)
        except OSError as exc:
            raise OperationError(f"cannot write {path}: {exc.strerror}; run as root") from None
        changes.append(Change(item.dest, "installed" if old is None else "updated"))
    if Kind.KERNEL_INSTALL in kinds or Kind.DEBIAN in kinds:
        conf = _hooks_conf(host, exe)
        if conf is not None:
            changes.append(conf)
    return changes


def remove(host: HostView, kinds: tuple[Kind, ...]) -> list[Change]:
    changes: list[Change] = []
    for item in ITEMS:
        if item.kind not in kinds:
            continue
        path = host.path(item.dest)
        try:
            path.unlink()
        except FileNotFoundError:
            changes.append(Change(item.dest, "absent"))
            continue
        except OSError as exc:
            raise OperationError(f"cannot remove {path}: {exc.strerror}; run as root") from None
        changes.append(Change(item.dest, "removed"))
    return changes
