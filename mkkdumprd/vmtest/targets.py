"""Stand-ins for the image's dump target, so the crash test never touches the real one.

The target is the one the image itself will look for (its manifest's resolved target):
  local  scratch disks with a fresh filesystem of the same type and the same UUID/label
         and the same block stack (local_target.py), on a disk bus whose driver the
         image carries (or the first bus, when it carries none: then the missing driver
         is what the test finds);
  raw    a zero-filled scratch disk at the device name the image writes to; the dump is
         recovered from it with `mkkdumprd savecore`'s code;
  nfs    nfs-ganesha on 127.0.0.1 (servers.py) exporting a scratch folder under the
         image's export path, reached through one guestfwd relay at the image's server
         address (QEMU user networking with restrict=on: nothing else is reachable);
  ssh    a private sshd on 127.0.0.1 (servers.py) with its own host and client key,
         reached at 10.0.2.100:22 through one guestfwd relay. The image trusts only the
         real server's host key, so the image booted is the image under test rebuilt
         (rebuild.py) with the stand-in's destination, key, host key and a scratch path;
         `describe()` names each substitution.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.image.spec import Entry
from mkkdumprd.lifecycle.savecore import savecore
from mkkdumprd.network.ssh_command import known_hosts_line, parse_target
from mkkdumprd.vmtest import rebuild, scratch, vmcore_check

# Re-exported: the local stand-in's names callers and tests know from here.
from mkkdumprd.vmtest.local_target import SCRATCH_MB, local_stand_in
from mkkdumprd.vmtest.local_target import GuestBoot as GuestBoot
from mkkdumprd.vmtest.local_target import LocalStandIn as LocalStandIn
from mkkdumprd.vmtest.local_target import bus_drivers as bus_drivers
from mkkdumprd.vmtest.local_target import choose_bus as choose_bus
from mkkdumprd.vmtest.local_target import missing as missing
from mkkdumprd.vmtest.qemu import Drive
from mkkdumprd.vmtest.servers import GUEST_SERVER_IP, NfsServer, SshServer

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest

NIC_DRIVERS = ("virtio_pci", "virtio_net")
_NODE = (
    (re.compile(r"/dev/vd([a-z])"), "virtio"),
    (re.compile(r"/dev/sd([a-z])"), "scsi-or-sata"),
    (re.compile(r"/dev/nvme(\d+)n1"), "nvme"),
)


def module_name(name: str) -> str:
    return Path(name).name.split(".ko")[0].replace("-", "_")


def builtin_modules(kmoddir: Path | None) -> frozenset[str]:
    """Drivers compiled into the kernel (modules.builtin), which the image need not carry."""
    if kmoddir is None:
        return frozenset()
    try:
        text = (kmoddir / "modules.builtin").read_text()
    except OSError:
        return frozenset()
    return frozenset(module_name(line) for line in text.split())


def node_position(node: str, present: frozenset[str], wanted: str | None) -> tuple[str, int]:
    """The bus and index at which a disk shows up as `node` (/dev/vdb: virtio, 1)."""
    for rx, bus in _NODE:
        m = rx.fullmatch(node)
        if m:
            g = m.group(1)
            index = int(g) if g.isdigit() else ord(g) - ord("a")
            if bus == "scsi-or-sata":
                bus = wanted or ("scsi" if not missing(bus_drivers("scsi"), present)
                                 else "sata")
            return bus, index
    raise UsageError(f"the image writes to {node}; a stand-in disk can be made for whole "
                     "disks named /dev/vdX, /dev/sdX or /dev/nvmeNn1 (or UUID=/LABEL= "
                     "targets)")


def _placed(disk: Path, bus: str, index: int, workdir: Path) -> tuple[Drive, ...]:
    """`disk` at position `index` of `bus`, with small empty disks before it."""
    fill = tuple(Drive(scratch.make_raw(workdir / f"filler{i}.img", 1), bus=bus)
                 for i in range(index))
    return (*fill, Drive(disk, bus=bus))


class StandIn(Protocol):
    drives: tuple[Drive, ...]
    prepare: tuple[Entry, ...]  # first-stage entries that make the stand-in (local_target)
    guestfwd: tuple[str, ...]
    missing_drivers: tuple[str, ...]
    image: Path | None          # the image to boot instead of the one under test (rebuilt)
    open_network: bool          # QEMU user networking without restrict=on (--real-target)

    def describe(self) -> str: ...

    def read_back(self, out: Path) -> Path:
        """The complete vmcore copied to `out`; OperationError saying what is there else."""
        ...

    def close(self) -> str | None:
        """Stop what the stand-in started; a note for the report, if any."""
        ...


@dataclass
class RawStandIn:
    device: str
    disk: Path
    drives: tuple[Drive, ...]
    missing_drivers: tuple[str, ...]
    guestfwd: tuple[str, ...] = ()
    image: Path | None = None
    open_network: bool = False
    prepare: tuple[Entry, ...] = ()

    def describe(self) -> str:
        return f"scratch raw disk {self.disk} ({self.device}, {self.drives[-1].bus} bus)"

    def read_back(self, out: Path) -> Path:
        res = savecore(self.disk, out.parent / "savecore")
        if res.vmcore is None:
            raise OperationError(f"savecore: {res.message}")
        res.vmcore.rename(out)
        return out

    def close(self) -> str | None:
        return None


@dataclass
class NfsStandIn:
    server_ip: str
    export: str
    path: str
    server: NfsServer
    missing_drivers: tuple[str, ...]
    drives: tuple[Drive, ...] = ()
    guestfwd: tuple[str, ...] = field(default=())
    image: Path | None = None
    open_network: bool = False
    prepare: tuple[Entry, ...] = ()

    def describe(self) -> str:
        return (f"nfs-ganesha on 127.0.0.1:{self.server.port} (pid {self.server.pid}) "
                f"exporting {self.server.export} as {self.export}, reached at "
                f"{self.server_ip}:2049 through a guestfwd relay")

    def read_back(self, out: Path) -> Path:
        d = latest_dump_dir(self.server.export / self.path.strip("/"))
        vmcore = d / "vmcore"
        if not vmcore.is_file():
            raise OperationError(f"{d} holds {sorted(p.name for p in d.iterdir())}"
                                 ", no complete vmcore")
        vmcore.rename(out)
        return out

    def close(self) -> str | None:
        self.server.stop()
        return None


def latest_dump_dir(top: Path) -> Path:
    """The newest `<ip>-<date>` folder the capture image made under `top`."""
    dirs = sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else []
    if not dirs:
        raise OperationError(f"no dump directory under {top} on the stand-in server")
    return dirs[-1]


@dataclass
class SshStandIn:
    server: SshServer
    dumps: Path                     # the local folder the rebuilt image's path names
    image: Path | None
    substituted: str                # what the rebuild changed, for the report
    missing_drivers: tuple[str, ...]
    guestfwd: tuple[str, ...]
    drives: tuple[Drive, ...] = ()
    open_network: bool = False
    prepare: tuple[Entry, ...] = ()

    def describe(self) -> str:
        return (f"private sshd on 127.0.0.1:{self.server.port} (pid {self.server.pid}) with "
                f"its own host and client key, reached at {GUEST_SERVER_IP}:22 through a "
                f"guestfwd relay; the image booted is the image under test rebuilt for it "
                f"({self.image}): {self.substituted}")

    def read_back(self, out: Path) -> Path:
        d = latest_dump_dir(self.dumps)
        flat = d / "vmcore.flat"
        if not flat.is_file():
            raise OperationError(f"{d} holds {sorted(p.name for p in d.iterdir())}, no "
                                 "complete vmcore.flat")
        return vmcore_check.restore_flat(flat, out)

    def close(self) -> str | None:
        self.server.stop()
        return None


def ssh_stand_in(target: Mapping[str, Any], request: BuildRequest | None,
                 modules: frozenset[str], workdir: Path) -> SshStandIn:
    """A private sshd and the image under test rebuilt to dump to it."""
    if request is None:
        raise UsageError("an ssh image is proved against a private sshd by rebuilding it "
                         "for that server (the image trusts only the real server's key): "
                         "give -c/--target instead of --image, or --real-target")
    configured = str(target.get("server") or "")
    path = str(target.get("path") or "/var/crash")
    user = parse_target(configured).user
    srv = SshServer(workdir / "sshd")
    srv.start()
    try:
        assert srv.keys is not None
        dumps = workdir / "ssh-dumps"
        dumps.mkdir(parents=True, exist_ok=True)
        sub = rebuild.Substitution(
            server=f"root@{GUEST_SERVER_IP}", path=str(dumps), sshkey=str(srv.keys.client_key),
            known_hosts=known_hosts_line(GUEST_SERVER_IP, 22, srv.keys.host_public) + "\n",
            relay=rebuild.Relay(GUEST_SERVER_IP, srv.port))
        image = rebuild.rebuild(request, sub, workdir / "capture-for-stand-in.img")
    except BaseException:
        srv.stop()
        raise
    what = sub.describe(configured, path)
    if user != "root":
        what += f" (user {user} -> root: the private sshd admits root only)"
    return SshStandIn(srv, dumps, image, what, missing(NIC_DRIVERS, modules),
                      (srv.guestfwd(22),))


def stand_in(target: Mapping[str, Any], modules: frozenset[str], workdir: Path,
             bus: str | None = None, request: BuildRequest | None = None,
             boot: GuestBoot | None = None) -> StandIn:
    """The stand-in for the image's resolved target (`manifest["config"]["target"]`);
    `modules`: the drivers the capture kernel has (the image's and the built-in ones);
    `request`: how the image under test was built (an ssh stand-in rebuilds it, a local
    one takes the block stack from its discovery); `boot`: the guest, for a scratch
    filesystem or stack the guest makes (local_target.py)."""
    kind = target.get("kind")
    device = target.get("device") or ""
    path = str(target.get("path") or "/")
    if kind == "local":
        return local_stand_in(target, modules, workdir, bus, request, boot)
    if kind == "raw":
        where, index = node_position(device, modules, bus)
        disk = scratch.make_raw(workdir / "scratch-raw.img", SCRATCH_MB)
        return RawStandIn(device, disk, _placed(disk, where, index, workdir),
                          missing(bus_drivers(where), modules))
    if kind == "nfs":
        server = str(target.get("server") or "")
        host, _, export = server.rpartition(":")
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            raise UsageError(f"the image mounts {server}; the stand-in NFS server needs the "
                             "server as an IPv4 address the guest dials (build the image "
                             "with e.g. --target nfs:10.0.2.100:/export)") from None
        srv = NfsServer(workdir / "nfs")
        srv.pseudo = export or "/"
        srv.start()
        (srv.export / path.strip("/")).mkdir(parents=True, exist_ok=True)
        return NfsStandIn(str(ip), export, path, srv, missing(NIC_DRIVERS, modules),
                          guestfwd=(srv.guestfwd(2049, str(ip)),))
    if kind == "ssh":
        return ssh_stand_in(target, request, modules, workdir)
    raise UsageError(f"`mkkdumprd test --vm` has no stand-in for {kind} targets")
