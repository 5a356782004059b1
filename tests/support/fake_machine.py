"""A fake machine tree for host-only builds: /sys for a virtio disk with two partitions,
/dev nodes and by-uuid links, and a /proc/self/mountinfo with the dump target mounted."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mkkdumprd.assemble.request import BuildRequest
    from mkkdumprd.host import Host
    from tests.support.debian_kernel import Kernel

UUID = "0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e"
ROOT_UUID = "11111111-2222-4333-8444-555555555555"


def fake_machine(root: Path, mountpoint: str = "/srv/dump") -> Path:
    def w(path: str, text: str = "") -> None:
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def ln(path: str, target: str) -> None:
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(target)

    pci = "/sys/devices/pci0000:00/0000:00:05.0"
    w(f"{pci}/modalias", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
    ln(f"{pci}/driver", "../../../bus/pci/drivers/virtio-pci")
    ln("/sys/bus/pci/drivers/virtio-pci/module", "../../../../module/virtio_pci")
    (root / "sys/module/virtio_pci").mkdir(parents=True)
    w(f"{pci}/virtio2/modalias", "virtio:d00000002v00001AF4\n")
    ln(f"{pci}/virtio2/driver", "../../../../bus/virtio/drivers/virtio_blk")
    ln("/sys/bus/virtio/drivers/virtio_blk/module", "../../../../module/virtio_blk")
    (root / "sys/module/virtio_blk").mkdir(parents=True)
    w(f"{pci}/virtio2/block/vdb/vdb1/partition", "1\n")
    ln("/sys/class/block/vdb1", "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vdb/vdb1")
    ln("/sys/class/block/vdb", "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vdb")
    w(f"{pci}/virtio2/block/vda/vda1/partition", "1\n")
    ln("/sys/class/block/vda1", "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda/vda1")
    ln(f"/dev/disk/by-uuid/{ROOT_UUID}", "../../vda1")
    w("/dev/vda1")
    w("/dev/vdb1")
    w("/dev/vdb")
    ln(f"/dev/disk/by-uuid/{UUID}", "../../vdb1")
    ln("/dev/disk/by-partuuid/abcd-01", "../../vdb1")
    w("/proc/self/mountinfo",
      "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
      f"36 22 254:17 / {mountpoint} rw,relatime shared:1 - ext4 /dev/vdb1 rw\n"
      "40 22 0:5 / /proc rw - proc proc rw\n")
    (root / mountpoint.lstrip("/") / "crash").mkdir(parents=True)
    return root


# ---- storage stacks (tests/unit/test_storage_*.py) ---------------------------------------

VG_UUID = "A" * 32


def _w(root: Path, path: str, text: str = "") -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _ln(root: Path, path: str, target: str) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(target)


def add_whole_vda(root: Path) -> None:
    """The whole disk vda of the base tree's virtio2 (which shows only its partition vda1):
    its sysfs entry, `device` link and /dev node, for a stack built on vda itself."""
    _ln(root, "/sys/class/block/vda", "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda")
    _ln(root, "/sys/devices/pci0000:00/0000:00:05.0/virtio2/block/vda/device", "../..")
    _w(root, "/dev/vda")


def add_disk(root: Path, name: str, slot: int, parts: int = 1) -> None:
    """Another virtio disk `name` with partitions name1..N (and its `device` link)."""
    dev = f"/sys/devices/pci0000:00/0000:00:{slot:02x}.0/virtio{slot}"
    _w(root, f"{dev}/modalias", "virtio:d00000002v00001AF4\n")
    _ln(root, f"{dev}/driver", "../../../../bus/virtio/drivers/virtio_blk")
    _ln(root, f"{dev}/block/{name}/device", "../..")
    _ln(root, f"/sys/class/block/{name}", f"../../devices/pci0000:00/0000:00:{slot:02x}.0/"
        f"virtio{slot}/block/{name}")
    _w(root, f"/dev/{name}")
    for i in range(1, parts + 1):
        _w(root, f"{dev}/block/{name}/{name}{i}/partition", f"{i}\n")
        _ln(root, f"/sys/class/block/{name}{i}", f"../../devices/pci0000:00/0000:00:"
            f"{slot:02x}.0/virtio{slot}/block/{name}/{name}{i}")
        _w(root, f"/dev/{name}{i}")


def add_dm(root: Path, kname: str, dm_name: str, uuid: str, slaves: list[str]) -> None:
    """A device-mapper device over `slaves` (kernel names)."""
    d = f"/sys/devices/virtual/block/{kname}"
    _w(root, f"{d}/dm/name", dm_name + "\n")
    _w(root, f"{d}/dm/uuid", uuid + "\n")
    for s in slaves:
        _ln(root, f"{d}/slaves/{s}", f"/sys/class/block/{s}")
    _ln(root, f"/sys/class/block/{kname}", f"../../devices/virtual/block/{kname}")
    _w(root, f"/dev/{kname}")
    _ln(root, f"/dev/mapper/{dm_name}", f"../{kname}")


def add_md(root: Path, kname: str, level: str, members: list[str], uuid: str = "",
           metadata: str = "1.2") -> None:
    d = f"/sys/devices/virtual/block/{kname}"
    _w(root, f"{d}/md/level", level + "\n")
    _w(root, f"{d}/md/metadata_version", metadata + "\n")
    for s in members:
        _ln(root, f"{d}/slaves/{s}", f"/sys/class/block/{s}")
    _ln(root, f"/sys/class/block/{kname}", f"../../devices/virtual/block/{kname}")
    _w(root, f"/dev/{kname}")
    if uuid:
        _ln(root, f"/dev/disk/by-id/md-uuid-{uuid}", f"../../{kname}")


def lvm_uuid(lv: str, suffix: str = "") -> str:
    return f"LVM-{VG_UUID}{lv.ljust(32, 'x')[:32]}" + (f"-{suffix}" if suffix else "")


def mount_target(root: Path, kname: str, fstype: str, fs_uuid: str,
                 mountpoint: str = "/var/crash") -> None:
    """`kname` holds the dump filesystem (UUID `fs_uuid`), mounted at `mountpoint`."""
    _ln(root, f"/dev/disk/by-uuid/{fs_uuid}", f"../../{kname}")
    mapper = root / "dev/mapper"
    source = f"/dev/{kname}"
    if mapper.is_dir():
        for link in mapper.iterdir():
            if link.is_symlink() and Path(str(link.readlink())).name == kname:
                source = f"/dev/mapper/{link.name}"
    _w(root, "/proc/self/mountinfo",
       "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
       f"36 22 253:9 / {mountpoint} rw,relatime - {fstype} {source} rw\n")
    (root / mountpoint.lstrip("/")).mkdir(parents=True, exist_ok=True)


def add_iscsi_disk(root: Path, name: str, *, host: int = 2, session: int = 1, lun: int = 1,
                   target: str = "iqn.2026-12.test.mkkdumprd:dump", address: str = "10.0.2.100",
                   port: int = 3260, tpgt: int = 1,
                   initiator: str | None = "iqn.1993-08.org.debian:01:guest",
                   chap: dict[str, str] | None = None, partitions: int = 0) -> None:
    """A SCSI disk `name` that is LUN `lun` of iSCSI session `session` (the kernel's sysfs
    layout), open-iscsi's initiatorname.iscsi and, with `chap`, the node record holding
    `node.session.auth.*` (keys username, password, username_in, password_in)."""
    sess = f"/sys/devices/platform/host{host}/session{session}"
    disk = f"{sess}/target{host}:0:0/{host}:0:0:{lun}/block/{name}"
    _ln(root, f"{disk}/device", "../..")
    _ln(root, f"/sys/class/block/{name}", f"../..{disk[4:]}")
    _w(root, f"/dev/{name}")
    for i in range(1, partitions + 1):
        _w(root, f"{disk}/{name}{i}/partition", f"{i}\n")
        _ln(root, f"/sys/class/block/{name}{i}", f"../..{disk[4:]}/{name}{i}")
        _w(root, f"/dev/{name}{i}")
    _w(root, f"{sess}/iscsi_session/session{session}/targetname", target + "\n")
    _w(root, f"{sess}/iscsi_session/session{session}/tpgt", f"{tpgt}\n")
    _w(root, f"{sess}/iscsi_session/session{session}/initiatorname",
       (initiator or "") + "\n")
    link = f"/sys/class/iscsi_session/session{session}"
    if not (root / link.lstrip("/")).is_symlink():
        _ln(root, link, f"../..{sess[4:]}/iscsi_session/session{session}")
    conn = f"{sess}/connection{session}:0/iscsi_connection/connection{session}:0"
    _w(root, f"{conn}/persistent_address", address + "\n")
    _w(root, f"{conn}/persistent_port", f"{port}\n")
    clink = f"/sys/class/iscsi_connection/connection{session}:0"
    if not (root / clink.lstrip("/")).is_symlink():
        _ln(root, clink, f"../..{conn[4:]}")
    if initiator is not None:
        _w(root, "/etc/iscsi/initiatorname.iscsi",
           f"## DO NOT EDIT OR REMOVE THIS FILE!\nInitiatorName={initiator}\n")
    node = [f"node.name = {target}", f"node.tpgt = {tpgt}", "node.startup = automatic",
            f"node.conn[0].address = {address}", f"node.conn[0].port = {port}"]
    if chap:
        node.append("node.session.auth.authmethod = CHAP")
        node.extend(f"node.session.auth.{k} = {v}" for k, v in chap.items())
    else:
        node.append("node.session.auth.authmethod = None")
    _w(root, f"/etc/iscsi/nodes/{target}/{address},{port},{tpgt}/default",
       "# BEGIN RECORD 2.1.8\n" + "\n".join(node) + "\n# END RECORD\n")


def add_slirp_nic(root: Path, mac: str = "52:54:00:12:34:56") -> None:
    """A virtio NIC eth0 (`mac`) with QEMU user networking's address 10.0.2.15/24 and its
    default route via 10.0.2.2, as a host-only build reads them (the iSCSI tests)."""
    from tests.support.fake_network import FakeNet

    net = FakeNet(root)
    dev = "sys/devices/pci0000:00/0000:00:02.0"
    for rel, target in ((f"{dev}/driver", "../../../bus/pci/drivers/virtio-pci"),
                        (f"{dev}/virtio0/driver", "../../../../bus/virtio/drivers/virtio_net"),
                        ("sys/bus/virtio/drivers/virtio_net/module",
                         "../../../../module/virtio_net"),
                        ("sys/class/net/eth0", f"../../{dev[4:]}/virtio0/net/eth0")):
        net.symlink(rel, target)
    (root / "sys/module/virtio_net").mkdir(parents=True, exist_ok=True)
    net.write(f"{dev}/virtio0/net/eth0/address", mac + "\n")
    net.symlink(f"{dev}/virtio0/net/eth0/device", "../../../virtio0")
    net.addr4("eth0", "10.0.2.15/24")
    net.route4("eth0", "0.0.0.0/0", "10.0.2.2")
    net.commit()


def host_only_request(kernel: Kernel, sysroot: Host, machine: Host,
                      **kw: object) -> BuildRequest:
    """A host-only x86_64 build of `kernel` with /var/crash as the path, the machine read
    from `machine` (a fake tree) and files from `sysroot`; `kw` overrides any field."""
    from mkkdumprd.assemble.request import BuildRequest
    from mkkdumprd.config.model import KdumpConfig

    args: dict[str, object] = dict(config=KdumpConfig(path="/var/crash"), kver=kernel.kver,
                                   kmoddir=kernel.kmoddir, sysroot=sysroot, machine=machine,
                                   arch="x86_64", hostonly=True)
    args.update(kw)
    return BuildRequest(**args)  # type: ignore[arg-type]
