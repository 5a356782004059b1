"""Host-only driver discovery on fake /proc and /sys trees: partitions, dm and md slaves,
virtio PCI ancestors, NVMe, vlan/bond/bridge stacks, mounts, and the hand-off to
resolve_modules (unmatched modaliases are skipped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mkkdumprd.host import Host
from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.discovery import (
    DeviceNotFound,
    fs_module,
    modules_for_block_device,
    modules_for_netdev,
)
from mkkdumprd.kmod.index import ModuleIndex
from tests.support.fake_kmod import write_builtin, write_module

PCI = "/sys/devices/pci0000:00"
VBLK = f"{PCI}/0000:00:04.0"
VNET = f"{PCI}/0000:00:03.0"
VNET2 = f"{PCI}/0000:00:05.0"
NVME = f"{PCI}/0000:00:06.0"
VIRTIO_BLK_ALIAS = "virtio:d00000002v00001AF4"
VIRTIO_NET_ALIAS = "virtio:d00000001v00001AF4"
PCI_VIRTIO_ALIAS = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"


class Sys:
    """Builds a fake sysfs below `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, text: str) -> None:
        self.p(path).parent.mkdir(parents=True, exist_ok=True)
        self.p(path).write_text(text)

    def mkdir(self, path: str) -> None:
        self.p(path).mkdir(parents=True, exist_ok=True)

    def link(self, path: str, target: str) -> None:
        """An absolute-in-view symlink written relative, as sysfs does."""
        self.p(path).parent.mkdir(parents=True, exist_ok=True)
        rel = os.path.relpath(self.p(target), self.p(path).parent)
        self.p(path).symlink_to(rel)

    def device(self, path: str, driver: str | None = None, module: str | None = None,
               modalias: str | None = None, bus: str = "pci") -> None:
        self.mkdir(path)
        if modalias:
            self.write(f"{path}/modalias", modalias + "\n")
        if driver:
            drv = f"/sys/bus/{bus}/drivers/{driver}"
            self.mkdir(drv)
            if module:
                self.mkdir(f"/sys/module/{module}")
                if not self.p(f"{drv}/module").is_symlink():
                    self.link(f"{drv}/module", f"/sys/module/{module}")
            self.link(f"{path}/driver", drv)

    def block(self, devpath: str, name: str, majmin: str) -> None:
        self.mkdir(devpath)
        self.write(f"{devpath}/dev", majmin + "\n")
        self.link(f"/sys/class/block/{name}", devpath)
        self.link(f"/sys/dev/block/{majmin}", devpath)


@pytest.fixture
def sysfs(tmp_path: Path) -> Sys:
    s = Sys(tmp_path)
    s.device(PCI)
    s.device(VBLK, "virtio-pci", "virtio_pci", PCI_VIRTIO_ALIAS)
    s.device(f"{VBLK}/virtio1", "virtio_blk", "virtio_blk", VIRTIO_BLK_ALIAS, bus="virtio")
    disk = f"{VBLK}/virtio1/block/vda"
    s.block(disk, "vda", "252:0")
    for n in (1, 2, 3):
        s.block(f"{disk}/vda{n}", f"vda{n}", f"252:{n}")
        s.write(f"{disk}/vda{n}/partition", f"{n}\n")
    # NVMe: controller bound to the built-in... no, to the nvme module.
    s.device(NVME, "nvme", "nvme", "pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02")
    s.mkdir(f"{NVME}/nvme/nvme0")
    s.block(f"{NVME}/nvme/nvme0/nvme0n1", "nvme0n1", "259:0")
    # dm-crypt on vda2, md raid1 on vda3 + nvme0n1
    s.block("/sys/devices/virtual/block/dm-0", "dm-0", "253:0")
    s.write("/sys/devices/virtual/block/dm-0/dm/uuid", "CRYPT-LUKS2-abc-root\n")
    s.link("/sys/devices/virtual/block/dm-0/slaves/vda2", f"{disk}/vda2")
    s.block("/sys/devices/virtual/block/md0", "md0", "9:0")
    s.write("/sys/devices/virtual/block/md0/md/level", "raid1\n")
    s.link("/sys/devices/virtual/block/md0/slaves/vda3", f"{disk}/vda3")
    s.link("/sys/devices/virtual/block/md0/slaves/nvme0n1", f"{NVME}/nvme/nvme0/nvme0n1")
    # LVM on top of md0
    s.block("/sys/devices/virtual/block/dm-1", "dm-1", "253:1")
    s.write("/sys/devices/virtual/block/dm-1/dm/uuid", "LVM-xyz\n")
    s.link("/sys/devices/virtual/block/dm-1/slaves/md0", "/sys/devices/virtual/block/md0")
    s.mkdir("/dev/mapper")
    s.link("/dev/mapper/root", "/dev/dm-0")
    s.write("/dev/dm-0", "")
    s.write("/dev/vda1", "")
    s.mkdir("/dev/disk/by-uuid")
    s.link("/dev/disk/by-uuid/1234-abcd", "/dev/vda1")
    return s


def _net(s: Sys) -> None:
    s.device(VNET, "virtio-pci", "virtio_pci", PCI_VIRTIO_ALIAS.replace("1001", "1000"))
    s.device(f"{VNET}/virtio0", "virtio_net", "virtio_net", VIRTIO_NET_ALIAS, bus="virtio")
    s.mkdir(f"{VNET}/virtio0/net/eth0")
    s.link("/sys/class/net/eth0", f"{VNET}/virtio0/net/eth0")
    s.link(f"{VNET}/virtio0/net/eth0/device", f"{VNET}/virtio0")
    # eth1: an e1000e card whose driver is built in (no driver/module link)
    s.device(VNET2, "e1000e", None, "pci:v00008086d000010D3sv*")
    s.mkdir(f"{VNET2}/net/eth1")
    s.link("/sys/class/net/eth1", f"{VNET2}/net/eth1")
    s.link(f"{VNET2}/net/eth1/device", VNET2)
    # bond0 over eth0 + eth1, br0 over bond0, vlan br0.100 over br0
    for name, devtype in (("bond0", "bond"), ("br0", "bridge"), ("br0.100", "vlan")):
        s.mkdir(f"/sys/devices/virtual/net/{name}")
        s.write(f"/sys/devices/virtual/net/{name}/uevent",
                f"DEVTYPE={devtype}\nINTERFACE={name}\n")
        s.link(f"/sys/class/net/{name}", f"/sys/devices/virtual/net/{name}")
    s.write("/sys/devices/virtual/net/bond0/bonding/slaves", "eth0 eth1\n")
    s.mkdir("/sys/devices/virtual/net/br0/bridge")
    s.link("/sys/devices/virtual/net/br0/brif/bond0", "/sys/devices/virtual/net/bond0")
    s.link("/sys/devices/virtual/net/br0.100/lower_br0", "/sys/devices/virtual/net/br0")


VIRTIO_DISK = {"virtio_blk", VIRTIO_BLK_ALIAS, "virtio_pci", PCI_VIRTIO_ALIAS}


def test_partition_walks_up_to_every_ancestor(sysfs: Sys) -> None:
    view = Host(sysfs.root)
    assert modules_for_block_device(view, "/dev/vda1") == VIRTIO_DISK
    assert modules_for_block_device(view, "252:1") == VIRTIO_DISK
    assert modules_for_block_device(view, "UUID=1234-abcd") == VIRTIO_DISK


def test_dm_crypt_follows_slaves(sysfs: Sys) -> None:
    got = modules_for_block_device(Host(sysfs.root), "/dev/mapper/root")
    assert got == VIRTIO_DISK | {"dm_mod", "dm_crypt"}


def test_lvm_on_md_raid1_reaches_both_disks(sysfs: Sys) -> None:
    got = modules_for_block_device(Host(sysfs.root), "253:1")
    assert got >= VIRTIO_DISK | {"dm_mod", "md_mod", "raid1", "nvme"}
    assert "dm_crypt" not in got


def test_missing_block_device_is_a_clear_error(sysfs: Sys) -> None:
    with pytest.raises(DeviceNotFound, match="/dev/sdz"):
        modules_for_block_device(Host(sysfs.root), "/dev/sdz")


def test_mounts(sysfs: Sys) -> None:
    sysfs.write("/proc/self/mountinfo", "\n".join([
        "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
        "23 22 0:21 / /proc rw - proc proc rw",
        "30 22 253:0 / /var/crash rw - xfs /dev/mapper/root rw,attr2",
        "31 30 0:44 / /var/crash/nfs\\040dir rw - nfs 10.0.0.1:/export rw,vers=3,addr=1",
        "32 22 0:45 / /mnt/v4 rw - nfs4 srv:/x rw,vers=4.2",
        "33 22 0:46 / /mnt/btr rw - btrfs /dev/vda1 rw",
        "34 22 0:47 / /tmp rw - tmpfs tmpfs rw",
    ]) + "\n")
    got = {m.mountpoint: m for m in Host(sysfs.root).mounts()}
    assert sorted(got) == ["/", "/mnt/btr", "/mnt/v4", "/proc", "/tmp", "/var/crash",
                           "/var/crash/nfs dir"]
    assert (got["/"].majmin, got["/"].fstype, got["/"].source) == ("252:1", "ext4", "/dev/vda1")
    nfs = got["/var/crash/nfs dir"]
    assert (nfs.fstype, nfs.source, nfs.superopts) == ("nfs", "10.0.0.1:/export",
                                                       "rw,vers=3,addr=1")
    assert got["/var/crash"].source == "/dev/mapper/root"


def test_net_stack_unwraps_vlan_bridge_bond(sysfs: Sys) -> None:
    _net(sysfs)
    view = Host(sysfs.root)
    assert modules_for_netdev(view, "eth0") == {
        "virtio_net", VIRTIO_NET_ALIAS, "virtio_pci", PCI_VIRTIO_ALIAS.replace("1001", "1000")}
    assert modules_for_netdev(view, "eth1") == {"pci:v00008086d000010D3sv*"}
    got = modules_for_netdev(view, "br0.100")
    assert got == {"8021q", "bridge", "bonding"} | modules_for_netdev(view, "eth0") | \
        modules_for_netdev(view, "eth1")
    with pytest.raises(DeviceNotFound, match="wlan9"):
        modules_for_netdev(view, "wlan9")


def test_fs_module() -> None:
    assert fs_module("ext4") == "ext4"
    assert fs_module("ext3") == "ext4"
    assert fs_module("xfs") == "xfs"
    assert fs_module("btrfs") == "btrfs"
    assert fs_module("nfs") == "nfsv4"
    assert fs_module("nfs4") == "nfsv4"
    assert fs_module("fuse.sshfs") == "fuse"
    assert fs_module("vfat") == "vfat"


def test_discovered_names_resolve_and_unmatched_modaliases_are_skipped(
        sysfs: Sys, tmp_path: Path) -> None:
    kver = "6.6.0-test"
    kmoddir = tmp_path / "mods" / kver
    write_module(kmoddir, "kernel/drivers/virtio/virtio_pci.ko",
                 {"depends": "", "alias": "pci:v00001AF4d*sv*sd*bc*sc*i*"})
    write_module(kmoddir, "kernel/drivers/block/virtio_blk.ko",
                 {"depends": "", "alias": "virtio:d00000002v*"})
    write_module(kmoddir, "kernel/drivers/md/dm-crypt.ko", {"depends": "dm-mod"})
    write_module(kmoddir, "kernel/drivers/md/dm-mod.ko", {"depends": ""})
    write_module(kmoddir, "kernel/fs/xfs/xfs.ko", {"depends": "", "alias": "fs-xfs"})
    write_builtin(kmoddir, ["ext4"])
    index = ModuleIndex.load(kmoddir, kver)
    names = modules_for_block_device(Host(sysfs.root), "/dev/mapper/root") | {"xfs"}
    closure = resolve_modules(index, sorted(names | {"pci:v00008086d000010D3sv00sd00bc02"}))
    assert {m.name for m in closure.modules} == {
        "virtio_pci", "virtio_blk", "dm_mod", "dm_crypt", "xfs"}
    order = [m.name for m in closure.modules]
    assert order.index("dm_mod") < order.index("dm_crypt")
