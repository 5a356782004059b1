"""What the scratch disks must reproduce of a local target, and where they sit.

The filesystem (type, UUID, label; for btrfs the subvolume the image mounts by
`subvolid=`) and the block stack under it (md arrays, LVM volumes thin or not, LUKS
volumes) with the host's names: the image under test waits for /dev/mapper/VG-LV or
/dev/mdN, its lvm.conf accepts only the host's PV names and its mdadm.conf names the
host's array UUID, so the scratch stack uses the same VG/LV names, array name and UUID,
LUKS UUID and dm name, on scratch disks at the host's kernel names (vdb, sda2, nvme0n1p1:
the disk on its bus at its index, the partition number in an MBR the host writes).

Pure: built from the image's resolved target (its manifest) and, for a stack, the storage
discovery of the machine the image was built for (storage/stack.py's `Stack`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mkkdumprd.errors import UsageError
from mkkdumprd.storage.stack import Kind, Layer, Stack

# Filesystems the host makes (mkfs on a regular file) and reads back (debugfs) itself.
HOST_FS = ("ext2", "ext3", "ext4")
# Filesystems the guest makes and a read-back boot reads.
GUEST_FS = (*HOST_FS, "xfs", "btrfs")
# A btrfs subvolume id is recreated by making subvolumes in order from the first (256);
# a target deeper than this many ids is refused rather than making thousands.
FIRST_SUBVOLID = 256
MAX_SUBVOLID = FIRST_SUBVOLID + 64
_DISK = (
    (re.compile(r"vd([a-z])(\d*)"), "virtio"),
    (re.compile(r"sd([a-z])(\d*)"), "sd"),
    (re.compile(r"nvme(\d+)n1(?:p(\d+))?"), "nvme"),
)
_SUBVOLID = re.compile(r"(?:^|,)subvolid=(\d+)(?:,|$)")


@dataclass(frozen=True)
class Place:
    """Where a host disk or partition is stood in for: `bus` ("sd": scsi or sata, decided
    by the drivers), `index` on that bus, `partition` (0: the whole disk)."""

    name: str
    bus: str
    index: int
    partition: int

    @property
    def disk(self) -> str:
        """The whole disk's kernel name (vdb for vdb2, nvme0n1 for nvme0n1p1)."""
        if self.partition == 0:
            return self.name
        return self.name.removesuffix(("p" if self.bus == "nvme" else "") + str(self.partition))


def disk_name(bus: str, index: int) -> str:
    """The kernel name of the `index`th disk on `bus` (virtio 1: vdb)."""
    if bus == "nvme":
        return f"nvme{index}n1"
    return ("vd" if bus == "virtio" else "sd") + chr(ord("a") + index)


def place(name: str) -> Place:
    """The position at which a disk or partition shows up as /dev/`name`."""
    for rx, bus in _DISK:
        m = rx.fullmatch(name)
        if m:
            g, part = m.group(1), m.group(2) or "0"
            index = int(g) if g.isdigit() else ord(g) - ord("a")
            if int(part) > 4:
                raise UsageError(f"the target is on {name}; a stand-in partition is made in "
                                 "an MBR with primary partitions 1-4 only")
            return Place(name, bus, index, int(part))
    raise UsageError(f"the target is on /dev/{name}; a stand-in disk can be made for disks "
                     "named vdX, sdX or nvmeNn1 and their partitions 1-4")


@dataclass(frozen=True)
class Layout:
    fstype: str
    fs_uuid: str
    label: str | None
    path: str                       # the dump path below what the image mounts
    subvolid: int | None = None     # btrfs: the subvolume the image mounts by id
    subvolume: str | None = None    # its name (made with that id)
    stack: Stack | None = None      # the block stack, host names
    plain: Place | None = None      # no stack: where the one scratch disk sits

    @property
    def on_host(self) -> bool:
        """Made with mkfs on a file and read by debugfs, no guest step."""
        return (self.fstype in HOST_FS and self.stack is None and self.subvolid is None
                and (self.plain is None or self.plain.partition == 0))

    def fs_devices(self) -> tuple[str, ...]:
        """The /dev paths the filesystem is made on (a multi-device btrfs: several)."""
        if self.stack is None:
            return tuple(f"/dev/{p.name}" for p in self.places())
        return tuple(node(x) for x in (self.stack.top, *self.stack.extra))

    def places(self) -> tuple[Place, ...]:
        """The scratch disks (and partitions) to make, in the order of the stack."""
        if self.stack is None:
            return (self.plain,) if self.plain is not None else ()
        return tuple(place(x.name) for x in self.stack.layers() if x.kind is Kind.DISK)

    def layers(self) -> list[Layer]:
        return self.stack.layers() if self.stack is not None else []

    def kernel_modules(self) -> tuple[str, ...]:
        """What the guest's kernel needs beyond the disk drivers to build and read it."""
        mods = list(self.stack.kernel_modules()) if self.stack is not None else []
        mods.append(self.fstype)
        return tuple(dict.fromkeys(mods))

    def tools(self) -> tuple[str, ...]:
        """The host's programs the guest runs to build and read it."""
        kinds = {x.kind for x in self.layers()}
        out = [MKFS[self.fstype]]
        several = self.stack is not None and bool(self.stack.extra)
        if self.fstype == "btrfs" and (self.subvolid is not None or several):
            out.append("btrfs")
        out += [tool for kind, tool in ((Kind.MD, "mdadm"), (Kind.LVM, "lvm"),
                                        (Kind.CRYPT, "cryptsetup")) if kind in kinds]
        return tuple(out)

    def describe(self) -> str:
        sub = f", subvolume {self.subvolume} (id {self.subvolid})" if self.subvolid else ""
        what = f"{self.fstype} UUID={self.fs_uuid}" + (f" LABEL={self.label}" if self.label
                                                       else "") + sub
        return what + (f" on {self.stack.top.describe()}" if self.stack is not None else "")


MKFS = {"ext2": "mke2fs", "ext3": "mke2fs", "ext4": "mke2fs", "xfs": "mkfs.xfs",
        "btrfs": "mkfs.btrfs"}


def node(layer: Layer) -> str:
    """The /dev path of a layer in the guest, as the capture image's tools name it."""
    if layer.kind in (Kind.LVM, Kind.CRYPT):
        return f"/dev/mapper/{layer.dm_name}"
    return f"/dev/{layer.name}"


def layout(target: Mapping[str, Any], stack: Stack | None, fs_uuid: str,
           subvolume: str | None = None) -> Layout:
    """The layout for the image's resolved target (manifest `config.target`): `stack` and
    `subvolume` from the build's discovery (None when the image names none), `fs_uuid` the
    filesystem's UUID (the target's own when it is found by UUID=)."""
    fstype = str(target.get("fstype") or "ext4")
    if fstype not in GUEST_FS:
        raise UsageError(f"`mkkdumprd test --vm` makes scratch {', '.join(GUEST_FS)} "
                         f"filesystems, not {fstype}")
    device = str(target.get("device") or "")
    tag, _, value = device.partition("=")
    label = value if tag == "LABEL" else None
    if tag == "UUID":
        fs_uuid = value
    subvolid = None
    m = _SUBVOLID.search(str(target.get("mount_options") or ""))
    if m:
        subvolid = int(m.group(1))
        if fstype != "btrfs" or not FIRST_SUBVOLID <= subvolid <= MAX_SUBVOLID:
            raise UsageError(f"the image mounts {fstype} subvolume id {subvolid}; a stand-in "
                             f"recreates btrfs ids {FIRST_SUBVOLID}..{MAX_SUBVOLID} only")
        subvolume = (subvolume or f"subvolid-{subvolid}").strip("/")
    if stack is not None:
        for x in stack.layers():
            # The guest's stand-in disks are plain virtio/SCSI drives: a multipath map or
            # an iSCSI login would need a second path or a target server the proof does
            # not stand in for, and a stand-in without them proves a different image.
            if x.kind is Kind.MPATH:
                raise UsageError(f"the target is on multipath map {x.dm_name}; `mkkdumprd "
                                 "test --vm` has no stand-in for multipath (tests/vm/"
                                 "test_crash_multipath.py proves that layer)")
            if x.kind is Kind.DISK and x.iscsi is not None:
                raise UsageError(f"the target is on iSCSI LUN {x.name} "
                                 f"({x.iscsi.describe()}); `mkkdumprd test --vm` has no "
                                 "stand-in iSCSI target (tests/vm/test_crash_iscsi.py proves "
                                 "that layer)")
            if x.kind is Kind.DISK:
                place(x.name)       # refuse early what cannot be placed
            if x.kind is Kind.MD and len(x.below) < 2 and x.md_level != "linear":
                raise UsageError(f"the md array {x.name} has one member; a stand-in array "
                                 "needs the members the host shows")
    return Layout(fstype, fs_uuid, label, str(target.get("path") or "/"), subvolid,
                  subvolume if subvolid else None, stack)
