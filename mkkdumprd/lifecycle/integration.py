"""Install the integration files (systemd unit, kernel hooks) where no package does it.

Distribution packages ship mkkdumprd/data/packaging/ directly (the unit under
/usr/lib/systemd/system, the plugin under /usr/lib/kernel/install.d). `mkkdumprd
install-integration` is for a pip or source install: it copies the same files, from the
package data, into the admin's places under /etc, which systemd, kernel-install and
Debian's kernel packages all read. Installing twice changes nothing; `remove=True` takes
them out again.

When the mkkdumprd being installed for is not where the hooks look (a venv), its path goes
into the unit's Exec lines (quoted for systemd) and into /etc/mkkdumprd/hooks.conf as
MKKDUMPRD= (quoted for sh, which sources it as root); mkkdumprd/quoting.py does both, after
checking the path is absolute and free of control characters. hooks.conf keeps every byte
but its MKKDUMPRD= line and is written through a symlink; a unit or hook that is a symlink
(`systemctl mask`, a config manager) is left alone with a sentence saying so.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.quoting import check_path, shell_word, systemd_exec_word
from mkkdumprd.resources import data_dir

PACKAGED_EXE = "/usr/bin/mkkdumprd"
# Where the hooks look when hooks.conf names no MKKDUMPRD (besides their PATH).
HOOK_SEARCH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
HOOKS_CONF = PurePosixPath("/etc/mkkdumprd/hooks.conf")


class Kind(enum.Enum):
    SYSTEMD = "systemd"
    KERNEL_INSTALL = "kernel-install"
    DEBIAN = "debian"
    UDEV = "udev"


@dataclass(frozen=True)
class Item:
    kind: Kind
    src: str                 # under mkkdumprd/data/packaging/
    dest: PurePosixPath
    mode: int


ITEMS = (
    Item(Kind.SYSTEMD, "systemd/mkkdumprd.service",
         PurePosixPath("/etc/systemd/system/mkkdumprd.service"), 0o644),
    Item(Kind.SYSTEMD, "systemd/mkkdumprd-pstore.service",
         PurePosixPath("/etc/systemd/system/mkkdumprd-pstore.service"), 0o644),
    Item(Kind.SYSTEMD, "systemd/mkkdumprd-generator",
         PurePosixPath("/etc/systemd/system-generators/mkkdumprd-generator"), 0o755),
    Item(Kind.KERNEL_INSTALL, "kernel-install/60-mkkdumprd.install",
         PurePosixPath("/etc/kernel/install.d/60-mkkdumprd.install"), 0o755),
    Item(Kind.DEBIAN, "debian/postinst.d/mkkdumprd",
         PurePosixPath("/etc/kernel/postinst.d/mkkdumprd"), 0o755),
    Item(Kind.DEBIAN, "debian/postrm.d/mkkdumprd",
         PurePosixPath("/etc/kernel/postrm.d/mkkdumprd"), 0o755),
    # CPU/memory hotplug: reload the capture kernel where the kernel does not update it.
    Item(Kind.UDEV, "udev/98-mkkdumprd.rules",
         PurePosixPath("/etc/udev/rules.d/98-mkkdumprd.rules"), 0o644),
)


@dataclass(frozen=True)
class Change:
    path: PurePosixPath
    action: str              # "installed", "updated", "unchanged", "removed", "absent", KEPT


def detect(host: Host) -> tuple[Kind, ...]:
    """Which integrations this system uses."""
    found: list[Kind] = []
    if host.is_dir("/run/systemd/system") or host.is_dir("/etc/systemd/system"):
        found.append(Kind.SYSTEMD)
    if (host.is_dir("/usr/lib/kernel/install.d") or host.is_dir("/etc/kernel/install.d")
            or host.which("kernel-install") is not None):
        found.append(Kind.KERNEL_INSTALL)
    if host.is_dir("/var/lib/dpkg") or host.is_dir("/etc/kernel/postinst.d"):
        found.append(Kind.DEBIAN)
    # the rule reloads through the unit: only beside systemd
    if Kind.SYSTEMD in found and (host.is_dir("/etc/udev/rules.d")
                                  or host.is_dir("/usr/lib/udev/rules.d")):
        found.append(Kind.UDEV)
    return tuple(found)


def _source(item: Item, exe: str) -> bytes:
    path = data_dir("packaging") / item.src
    try:
        text = path.read_text()
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc.strerror}; reinstall mkkdumprd") from None
    if item.kind is Kind.SYSTEMD and exe != PACKAGED_EXE:
        text = text.replace(PACKAGED_EXE, systemd_exec_word(exe, executable=True))
    return text.encode()


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode)


_ASSIGNMENT = re.compile(rb"[ \t]*MKKDUMPRD=")
HOOKS_CONF_HEADER = (b"# Read by mkkdumprd's kernel hooks (shell). MKKDUMPRD_HOOKS=no turns them\n"
                     b"# off; BUILD_ARGS adds `mkkdumprd build` options (e.g. --no-hostonly).\n")


def hooks_conf_text(old: bytes, exe: str) -> bytes:
    """`old` with its MKKDUMPRD= assignment set to `exe`, every other byte kept.

    The first assignment is replaced where it stands and later ones (which would override
    it) are dropped; without one, the line is appended. Bytes, not text: a hooks.conf in
    another encoding passes through untouched.
    """
    line = f"MKKDUMPRD={shell_word(exe)}\n".encode()
    if not old:
        return HOOKS_CONF_HEADER + line
    out: list[bytes] = []
    placed = False
    for ln in old.splitlines(keepends=True):
        if _ASSIGNMENT.match(ln):
            if not placed:
                out.append(line if ln.endswith(b"\n") else line.rstrip(b"\n"))
                placed = True
            continue
        out.append(ln)
    if not placed:
        if out and not out[-1].endswith(b"\n"):
            out.append(b"\n")
        out.append(line)
    return b"".join(out)


def _hooks_conf(host: Host, exe: str) -> Change | None:
    """Name `exe` in hooks.conf when the hooks would not find it themselves."""
    if str(PurePosixPath(exe).parent) in HOOK_SEARCH:
        return None
    path = host.path(HOOKS_CONF)
    # An admin's symlinked hooks.conf (a config manager's) is written through the link.
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        if target.exists() and not target.is_file():
            raise OperationError(f"{path} is not a regular file; remove it or pass a hooks "
                                 "location that is one")
        old = target.read_bytes() if target.exists() else b""
        new = hooks_conf_text(old, exe)
        if new == old:
            return Change(HOOKS_CONF, "unchanged")
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
        _write(target, new, mode)
    except OSError as exc:
        raise OperationError(f"cannot update {path}: {exc.strerror}; run as root") from None
    return Change(HOOKS_CONF, "updated" if old else "installed")


# A unit or hook that is a symlink was put there on purpose (`systemctl mask` links the unit
# to /dev/null; a config manager links its own copy): neither replaced nor removed.
KEPT = "kept (a symlink)"


def install(host: Host, kinds: tuple[Kind, ...], exe: str) -> list[Change]:
    check_path(exe, "--mkkdumprd")
    if Kind.SYSTEMD in kinds:   # refused before anything is written
        systemd_exec_word(exe, executable=True)
    changes: list[Change] = []
    for item in ITEMS:
        if item.kind not in kinds:
            continue
        data = _source(item, exe)
        path = host.path(item.dest)
        if path.is_symlink():
            changes.append(Change(item.dest, KEPT))
            continue
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


def remove(host: Host, kinds: tuple[Kind, ...]) -> list[Change]:
    changes: list[Change] = []
    for item in ITEMS:
        if item.kind not in kinds:
            continue
        path = host.path(item.dest)
        if path.is_symlink():
            changes.append(Change(item.dest, KEPT))
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            changes.append(Change(item.dest, "absent"))
            continue
        except OSError as exc:
            raise OperationError(f"cannot remove {path}: {exc.strerror}; run as root") from None
        changes.append(Change(item.dest, "removed"))
    return changes
