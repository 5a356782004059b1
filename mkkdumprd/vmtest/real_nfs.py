"""`--real-target` for an nfs target: the test dump goes to the configured export itself.

The image under test is rebuilt (rebuild.py) with its path moved to a fresh folder
`PATH/mkkdumprd-test-<UTC>-<8 hex>` (real_target.py names it); a server on this machine's
loopback is dialled by the guest at 10.0.2.100 and relayed to 127.0.0.1:2049 (restrict=on),
any other through QEMU user networking without restrict. This machine never mounts the
export: after the crash a second short boot of the same kernel (readback.py) brings up
the guest's network, mounts the export with the very source, type, options and NFS
versions the capture image used (read from the rebuilt image's target.sh), writes the
test folder's tree as a tar onto a raw disk, removes the folder (`rm -rf` of a path whose
last component is a TEST_DIR name, checked here) and prints whether it did.

The folder's absence is not checked before the boot (that would be one more boot): its
name holds the time to the second and 32 random bits, and the capture image writes only
below it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.image import layout
from mkkdumprd.image.reader import read_file
from mkkdumprd.image.spec import Entry
from mkkdumprd.quoting import shell_word as q
from mkkdumprd.vmtest import readback
from mkkdumprd.vmtest.guest_tools import module_lines
from mkkdumprd.vmtest.local_target import GuestBoot
from mkkdumprd.vmtest.qemu import Drive
from mkkdumprd.vmtest.servers import GUEST_SERVER_IP, loopback_relay

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest

NFS_PORT = 2049
MOUNT = "/mnt/nfs"
REMOVED = "MKKDUMPRD-READBACK: removed the test folder"
# QEMU user networking's fixed addresses: the guest and its gateway.
GUEST_IP = "10.0.2.15/24"
GATEWAY = "10.0.2.2"
_SETTINGS = ("KDUMP_NFS_SOURCE", "KDUMP_NFS_FSTYPE", "KDUMP_NFS_OPTIONS", "KDUMP_NFS_VERSIONS")


@dataclass(frozen=True)
class NfsMount:
    """How the capture image mounts the export (its target.sh's settings)."""

    source: str
    fstype: str
    options: str
    versions: tuple[str, ...]       # unpinned NFSv4: tried newest first; () pinned


def image_mount(image: Path) -> NfsMount:
    """The rebuilt image's own mount settings, from its target.sh (`NAME=word` lines)."""
    text = ""
    for path in (layout.TARGET_SH, "/usr" + layout.TARGET_SH):
        try:
            text = read_file(image, path).decode("utf-8", "replace")
            break
        except UsageError:
            continue
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, eq, value = line.partition("=")
        if eq and name in _SETTINGS and name not in found:
            words = shlex.split(value)
            found[name] = words[0] if words else ""
    if not {"KDUMP_NFS_SOURCE", "KDUMP_NFS_FSTYPE"} <= set(found):
        raise OperationError(f"{image} has no NFS target script ({layout.TARGET_SH})")
    return NfsMount(found["KDUMP_NFS_SOURCE"], found["KDUMP_NFS_FSTYPE"],
                    found.get("KDUMP_NFS_OPTIONS") or "defaults",
                    tuple(found.get("KDUMP_NFS_VERSIONS", "").split()))


def readback_script(mount: NfsMount, folder: str, tar_device: str) -> str:
    """Network up, the export mounted as the capture image mounts it, the test folder's
    tree onto `tar_device`, then the folder removed (whatever the tar did)."""
    from mkkdumprd.vmtest.real_target import TEST_DIR

    name = folder.rstrip("/").rsplit("/", 1)[-1]
    if not TEST_DIR.fullmatch(name) or ".." in folder.split("/"):
        raise ValueError(f"refusing to remove {folder!r}: not a mkkdumprd-test folder")
    where = q(MOUNT + "/" + folder.strip("/"))
    tries = " ".join(q(f"{mount.options},vers={v}") for v in mount.versions) \
        or q(mount.options)
    return "\n".join([
        "export PATH=/usr/sbin:/sbin:/usr/bin:/bin",
        "ip link set lo up", "ip link set eth0 up",
        f"ip addr add {GUEST_IP} dev eth0", f"ip route add default via {GATEWAY}",
        f"mkdir -p {MOUNT}",
        "mounted=",
        f"for opts in {tries}; do",
        f"    if mount -t {q(mount.fstype)} -o \"$opts\" {q(mount.source)} {MOUNT}; then",
        "        mounted=1; break",
        "    fi",
        "done",
        '[ -n "$mounted" ] || exit 1',
        f"tar -C {where} -cf {q(tar_device)} .",
        "rc=$?",
        "sync",
        f"rm -rf -- {where} && echo {q(REMOVED)}",
        f"umount {MOUNT}",
        "exit $rc", ""])


@dataclass
class RealNfsTarget:
    server: str                       # HOST:/EXPORT as configured
    folder: str                       # the test folder, relative to the export's root
    image: Path | None
    substituted: str
    missing_drivers: tuple[str, ...]
    guestfwd: tuple[str, ...]
    open_network: bool
    boot: GuestBoot
    workdir: Path
    drives: tuple[Drive, ...] = ()
    prepare: tuple[Entry, ...] = ()
    removed: bool | None = None

    def describe(self) -> str:
        how = ("QEMU user networking (not restricted)" if self.open_network else
               f"a guestfwd relay from {GUEST_SERVER_IP}:{NFS_PORT} to this machine's "
               "loopback")
        return (f"the real NFS server {self.server}, test folder {self.folder} (removed "
                f"afterwards by a read-back boot), reached through {how}; the image booted "
                f"is the image under test rebuilt for it ({self.image}): {self.substituted}")

    def read_back(self, out: Path) -> Path:
        assert self.image is not None
        mount = image_mount(self.image)
        module = "nfsv4" if mount.fstype == "nfs4" else "nfsv3"
        entries, insmod = module_lines(self.boot.kmoddir or _no_kmoddir(),
                                       ("virtio_pci", "virtio_blk", "virtio_net", module))
        try:
            tree, console = readback.boot(
                self.boot.kernel, entries, insmod,
                lambda node: readback_script(mount, self.folder, node), (), self.workdir,
                self.boot.memory_mb, self.boot.accel, f"the test folder on {self.server}",
                guestfwd=self.guestfwd, open_network=self.open_network)
        except OperationError:
            self.removed = REMOVED in _log(self.workdir)
            raise
        self.removed = REMOVED in console
        return readback.take_newest_vmcore(tree, f"{self.folder} on {self.server}", out)

    def close(self) -> str | None:
        if self.removed:
            return f"removed {self.folder} from {self.server}"
        if self.removed is None:
            return (f"{self.folder} on {self.server} was not read back (the dump failed "
                    "before); remove it by hand if it exists")
        return f"COULD NOT REMOVE {self.folder} from {self.server}; remove it by hand"


def _no_kmoddir() -> Path:
    raise UsageError("--real-target for nfs reads the export back in a second guest boot, "
                     "which needs the kernel's modules: pass --kmoddir")


def _log(workdir: Path) -> str:
    try:
        return (workdir / "readback.log").read_text(errors="replace")
    except OSError:
        return ""


def real_nfs_target(target: Mapping[str, Any], request: BuildRequest, modules: frozenset[str],
                    workdir: Path, folder_name: str, boot: GuestBoot) -> RealNfsTarget:
    """The configured export, with the image rebuilt to dump into the test folder."""
    from mkkdumprd.vmtest import rebuild
    from mkkdumprd.vmtest.real_target import folder_path, is_loopback
    from mkkdumprd.vmtest.targets import NIC_DRIVERS, missing

    server = str(target.get("server") or "")
    host, _, export = server.rpartition(":")
    path = str(target.get("path") or "/var/crash")
    folder = folder_path(path, folder_name)
    if is_loopback(host.strip("[]")):
        sub = rebuild.Substitution(server=f"{GUEST_SERVER_IP}:{export}", path=folder)
        fwd: tuple[str, ...] = (loopback_relay(GUEST_SERVER_IP, NFS_PORT, NFS_PORT),)
        open_network = False
    else:
        sub = rebuild.Substitution(path=folder)
        fwd, open_network = (), True
    real = RealNfsTarget(server, folder, None, sub.describe(server, path),
                         missing(NIC_DRIVERS, modules), fwd, open_network, boot, workdir)
    real.image = rebuild.rebuild(request, sub, workdir / "capture-for-real-target.img")
    return real
