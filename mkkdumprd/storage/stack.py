"""The block stack under a dump target, read from sysfs through a Host.

From the target's block device down: device-mapper devices (`dm/uuid` says who made them:
`LVM-` logical volumes, thin pools included; `CRYPT-LUKS1/2-` LUKS volumes; `mpath-`
multipath maps, whose WWID follows the prefix and whose paths are in `slaves/`), md arrays
(`md/level`, members in `slaves/`), down to disks and partitions, which need only their
drivers (kmod/discovery.py), or for a SCSI disk below an iSCSI session its login
(storage/iscsi.py). A multi-device btrfs lists its other devices in
/sys/fs/btrfs/<fsid>/devices. Anything else under the target (a partition of a multipath
map, a loop device, an unknown device-mapper target, external-metadata RAID) is a build
error naming the layer: an image that cannot reach its target must not be built.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host

if TYPE_CHECKING:
    from mkkdumprd.storage.iscsi import IscsiLun

# LVM's dm uuid: "LVM-" + 32 characters of VG uuid + 32 of LV uuid + an optional
# "-suffix" for the layers LVM stacks itself (thin pool, snapshot origin, ...).
_LVM_UUID = re.compile(r"^LVM-([A-Za-z0-9]{32})([A-Za-z0-9]{32})(?:-([a-z]+))?$")
# cryptsetup's: "CRYPT-<TYPE>-<uuid without dashes>-<dm name>".
_CRYPT_UUID = re.compile(r"^CRYPT-(LUKS[12])-([0-9a-f]{32})-(.+)$")
# Names passed on to capture-time tools: LVM's own name rules, kernel device names.
_LVM_NAME = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$")
_KERNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")
_MD_UUID = re.compile(r"^[0-9a-f]{8}(?::[0-9a-f]{8}){3}$")
# multipath's dm uuid: "mpath-" + the WWID (SCSI: "3" + the NAA id from VPD page 0x83);
# kpartx's partitions of a map: "part<N>-mpath-<WWID>". WWIDs go into multipath.conf
# as a regular expression in double quotes: plain characters only.
_MPATH_UUID = re.compile(r"^mpath-([A-Za-z0-9][A-Za-z0-9 ._:-]*)$")
_MPATH_PART_UUID = re.compile(r"^part([0-9]+)-mpath-")
# The multipath table the capture image makes (storage/capture.py multipath_conf pins
# the path selector) and the SCSI device handlers a storage array may need attached.
MPATH_KERNEL_MODULES = ("dm_mod", "dm_multipath", "dm_service_time", "scsi_dh_alua",
                        "scsi_dh_emc", "scsi_dh_rdac", "scsi_dh_hp_sw")
# Kernel modules of LVM's own sub-layers, by the dm uuid suffix or LV name part.
_LVM_SUFFIX_MODULES = {"tpool": "dm_thin_pool", "pool": "dm_thin_pool", "real": "dm_snapshot",
                       "cow": "dm_snapshot"}
_LVM_PART_MODULES = (("_rimage", "dm_raid"), ("_rmeta", "dm_raid"), ("_mimage", "dm_mirror"),
                     ("_corig", "dm_cache"), ("_cdata", "dm_cache"), ("_tdata", "dm_thin_pool"),
                     ("_vdata", "dm_vdo"))
_MD_LEVEL_MODULES = {"raid4": "raid456", "raid5": "raid456", "raid6": "raid456",
                     "linear": "linear", "raid0": "raid0", "raid1": "raid1",
                     "raid10": "raid10"}


# Block devices with nothing the capture kernel could find again (memory, network).
_VIRTUAL = ("loop", "zram", "ram", "nbd", "rbd", "zd")


class Kind(enum.Enum):
    DISK = "disk"
    LVM = "lvm"
    MD = "md"
    CRYPT = "crypt"
    MPATH = "multipath"


# The modules.d entry that brings each layer's tools into the image.
MODULE_OF = {Kind.LVM: "lvm", Kind.MD: "mdraid", Kind.CRYPT: "crypt", Kind.MPATH: "multipath"}


class UnsupportedLayer(UsageError):
    """The target sits on a layer the capture image cannot set up."""


@dataclass(frozen=True)
class Layer:
    """One block layer under a dump target (partition, LV, md, LUKS...), layers below."""

    kind: Kind
    name: str                       # kernel name: vdb1, dm-3, md0
    below: tuple[Layer, ...] = ()
    kernel_modules: tuple[str, ...] = ()
    vg: str = ""                    # LVM
    lv: str = ""
    thin: bool = False
    dm_name: str = ""               # LVM, CRYPT, MPATH: the /dev/mapper name
    md_level: str = ""              # MD
    md_uuid: str = ""               # mdadm's form, aaaaaaaa:bbbbbbbb:cccccccc:dddddddd; "" unknown
    luks: str = ""                  # CRYPT: LUKS1 or LUKS2
    luks_uuid: str = ""             # CRYPT: the header's UUID
    wwid: str = ""                  # MPATH: multipath's WWID (the dm uuid without "mpath-")
    path_wwid: str = ""             # MPATH: the paths' sysfs device/wwid ("" unknown)
    iscsi: IscsiLun | None = None   # DISK: the iSCSI session it is a LUN of

    def describe(self) -> str:
        if self.kind is Kind.DISK:
            return f"{self.name} ({self.iscsi.describe()})" if self.iscsi else self.name
        if self.kind is Kind.MD:
            return f"{self.name} ({self.md_level}: {' '.join(_short(b) for b in self.below)})"
        if self.kind is Kind.MPATH:
            paths = " ".join(_short(b) for b in self.below)
            return f"multipath {self.dm_name} (WWID {self.wwid}: {paths})"
        if self.kind is Kind.LVM:
            what = f"thin LV {self.vg}/{self.lv}" if self.thin else f"LV {self.vg}/{self.lv}"
        else:
            what = f"{self.luks} {self.dm_name}"
        return f"{what} on {' + '.join(b.describe() for b in self.below)}"

    def walk(self) -> list[Layer]:
        """Every layer of this stack, lowest first, each once."""
        out: list[Layer] = []
        for b in self.below:
            out.extend(x for x in b.walk() if x not in out)
        out.append(self)
        return out


def _short(layer: Layer) -> str:
    return layer.name if layer.kind is Kind.DISK else layer.describe()


@dataclass(frozen=True)
class Stack:
    """The target's filesystem and what holds it. `extra` are the other devices of a
    multi-device btrfs."""

    fstype: str
    top: Layer
    extra: tuple[Layer, ...] = ()

    def describe(self) -> str:
        more = f" (btrfs devices: {', '.join(x.describe() for x in self.extra)})" \
            if self.extra else ""
        return f"{self.fstype} on {self.top.describe()}{more}"

    def layers(self) -> list[Layer]:
        out: list[Layer] = []
        for top in (self.top, *self.extra):
            out.extend(x for x in top.walk() if x not in out)
        return out

    def modules(self) -> list[str]:
        """The modules.d entries this stack needs, in a stable order."""
        kinds = {x.kind for x in self.layers()}
        names = [MODULE_OF[k] for k in (Kind.MPATH, Kind.MD, Kind.LVM, Kind.CRYPT)
                 if k in kinds]
        if self.iscsi_luns():
            names.insert(0, "iscsi")
        if self.extra:
            names.append("btrfs")
        return names

    def kernel_modules(self) -> list[str]:
        return list(dict.fromkeys(m for x in self.layers() for m in x.kernel_modules))

    def luks_uuids(self) -> list[str]:
        """The LUKS volumes whose keys the loader must hand to the capture kernel."""
        return [x.luks_uuid for x in self.layers() if x.kind is Kind.CRYPT]

    def iscsi_luns(self) -> list[IscsiLun]:
        """The iSCSI LUNs under the target, each session once."""
        return list(dict.fromkeys(x.iscsi for x in self.layers() if x.iscsi is not None))


def discover(host: Host, node: PurePosixPath, fstype: str, fs_uuid: str | None = None) -> Stack:
    """The stack under the block device `node` (a /dev path in host's view)."""
    top = layer_of(host, _sysdir(host, node), set())
    extra: tuple[Layer, ...] = ()
    if fstype == "btrfs" and fs_uuid:
        others = [d for d in host.listdir(f"/sys/fs/btrfs/{fs_uuid}/devices")
                  if d != top.name]
        extra = tuple(layer_of(host, _sysdir(host, PurePosixPath("/dev", d)), set())
                      for d in others)
    return Stack(fstype, top, extra)


def _sysdir(host: Host, node: PurePosixPath) -> PurePosixPath:
    cand = PurePosixPath("/sys/class/block") / node.name
    if not host.exists(cand):
        raise UsageError(f"block device {node} has no {cand}; is sysfs mounted?")
    return host.resolve(cand)


def layer_of(host: Host, sysdir: PurePosixPath, seen: set[PurePosixPath]) -> Layer:
    name = sysdir.name
    if not _KERNEL_NAME.match(name):
        raise UnsupportedLayer(f"block device name {name!r} cannot be used in the image")
    if sysdir in seen:
        raise UnsupportedLayer(f"block device {name} is stacked on itself")
    seen = seen | {sysdir}
    disk = sysdir.parent if host.exists(sysdir / "partition") else sysdir
    if host.is_dir(disk / "dm"):
        return _dm(host, disk, name, seen)
    if host.is_dir(disk / "md"):
        return _md(host, disk, name, seen)
    if host.is_dir(disk / "loop") or disk.name.startswith(_VIRTUAL):
        kind = "loop device" if host.is_dir(disk / "loop") else "virtual block device"
        raise UnsupportedLayer(f"the dump target is on {name}, a {kind} the capture image "
                               f"cannot set up; dump to a disk filesystem")
    from mkkdumprd.storage import iscsi

    lun = iscsi.lun_of(host, disk)
    if lun is not None:
        return Layer(Kind.DISK, name, kernel_modules=iscsi.KERNEL_MODULES, iscsi=lun)
    return Layer(Kind.DISK, name)


def _below(host: Host, disk: PurePosixPath, seen: set[PurePosixPath]) -> tuple[Layer, ...]:
    return tuple(layer_of(host, host.resolve(disk / "slaves" / s), seen)
                 for s in host.listdir(disk / "slaves"))


def _dm(host: Host, disk: PurePosixPath, name: str, seen: set[PurePosixPath]) -> Layer:
    uuid = (host.read_optional(disk / "dm" / "uuid") or "").strip()
    dm_name = (host.read_optional(disk / "dm" / "name") or "").strip()
    m = _LVM_UUID.match(uuid)
    if m:
        vg, lv = split_lvm_name(dm_name)
        if m.group(3):
            raise UnsupportedLayer(f"the dump target is on {dm_name}, an internal LVM device "
                                   f"({m.group(3)}); point the target at the LV itself")
        return _lvm(host, disk, name, dm_name, vg, lv, m.group(1), seen)
    c = _CRYPT_UUID.match(uuid)
    if c:
        h = c.group(2)
        luks_uuid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        below = _below(host, disk, seen)
        if len(below) != 1 or not _KERNEL_NAME.match(dm_name):
            raise UnsupportedLayer(f"the LUKS device {dm_name} has {len(below)} devices below "
                                   f"it; expected one")
        return Layer(Kind.CRYPT, name, below, ("dm_crypt",), dm_name=dm_name, luks=c.group(1),
                     luks_uuid=luks_uuid)
    if uuid.startswith("mpath-"):
        return _mpath(host, disk, name, dm_name, uuid, seen)
    p = _MPATH_PART_UUID.match(uuid)
    if p:
        raise UnsupportedLayer(
            f"the dump target is on {dm_name or name}, partition {p.group(1)} of a multipath "
            f"map (kpartx), which the capture image does not set up (supported: a filesystem "
            f"or LVM directly on the map); dump to another target")
    what = uuid.split("-", 1)[0] if "-" in uuid else (uuid or "no uuid")
    label = {"CRYPT": "dm-crypt (not LUKS)"}.get(what, what)
    raise UnsupportedLayer(
        f"the dump target is on the device-mapper device {dm_name or name} ({label}), a layer "
        f"the capture image does not set up (supported: LVM, LUKS, md RAID, multipath); dump "
        f"to another target"
    )


def _mpath(host: Host, disk: PurePosixPath, name: str, dm_name: str, uuid: str,
           seen: set[PurePosixPath]) -> Layer:
    """A multipath map: its paths are disks (their drivers come from kmod discovery)."""
    m = _MPATH_UUID.match(uuid)
    if m is None or not _KERNEL_NAME.match(dm_name):
        raise UnsupportedLayer(f"the multipath map {dm_name or name} has an unusual WWID or "
                               f"name ({uuid!r}) the capture image cannot name")
    below = _below(host, disk, seen)
    if not below:
        raise UnsupportedLayer(f"the multipath map {dm_name} ({m.group(1)}) shows no path "
                               f"in sysfs")
    odd = [b.name for b in below if b.kind is not Kind.DISK]
    if odd:
        raise UnsupportedLayer(f"the multipath map {dm_name} has paths that are not disks "
                               f"({', '.join(odd)})")
    # The kernel's own form of the WWID ("naa.5000c500..."): the capture script counts the
    # paths it sees by it when the map does not come up.
    path_wwid = (host.read_optional(
        PurePosixPath("/sys/class/block") / below[0].name / "device" / "wwid") or "").strip()
    if not re.match(r"^[A-Za-z0-9 ._:-]*$", path_wwid):
        path_wwid = ""
    return Layer(Kind.MPATH, name, below, MPATH_KERNEL_MODULES, dm_name=dm_name,
                 wwid=m.group(1), path_wwid=path_wwid)


def split_lvm_name(dm_name: str) -> tuple[str, str]:
    """LVM's dm name "vg-lv" with "-" in either name doubled, split into (vg, lv)."""
    parts = re.split(r"(?<!-)-(?!-)", dm_name)
    if len(parts) != 2:
        raise UnsupportedLayer(f"cannot read the LVM volume group and name from {dm_name!r}")
    vg, lv = (p.replace("--", "-") for p in parts)
    if not (_LVM_NAME.match(vg) and _LVM_NAME.match(lv)):
        raise UnsupportedLayer(f"unusual LVM names in {dm_name!r}")
    return vg, lv


def _lvm(host: Host, disk: PurePosixPath, name: str, dm_name: str, vg: str, lv: str,
         vg_uuid: str, seen: set[PurePosixPath]) -> Layer:
    """An LV: LVM's own sub-layers of the same VG (thin pool, raid images, ...) are folded
    into it; the PVs under them become its `below`."""
    modules: list[str] = ["dm_mod"]
    pvs: list[Layer] = []
    thin = False
    todo = [disk]
    inner: set[PurePosixPath] = {disk}
    while todo:
        d = todo.pop(0)
        for s in host.listdir(d / "slaves"):
            sd = host.resolve(d / "slaves" / s)
            m = _LVM_UUID.match((host.read_optional(sd / "dm" / "uuid") or "").strip())
            if m and m.group(1) == vg_uuid:
                if sd not in inner:
                    inner.add(sd)
                    todo.append(sd)
                    suffix = m.group(3) or ""
                    thin = thin or suffix in ("tpool", "pool")
                    if suffix in _LVM_SUFFIX_MODULES:
                        modules.append(_LVM_SUFFIX_MODULES[suffix])
                    sub = (host.read_optional(sd / "dm" / "name") or "").strip()
                    modules.extend(mod for part, mod in _LVM_PART_MODULES if part in sub)
                continue
            pv = layer_of(host, sd, seen)
            if pv not in pvs:
                pvs.append(pv)
    if not pvs:
        raise UnsupportedLayer(f"the LV {vg}/{lv} shows no physical volume in sysfs")
    return Layer(Kind.LVM, name, tuple(pvs), tuple(dict.fromkeys(modules)), vg=vg, lv=lv,
                 thin=thin, dm_name=dm_name)


def _md(host: Host, disk: PurePosixPath, name: str, seen: set[PurePosixPath]) -> Layer:
    level = (host.read_optional(disk / "md" / "level") or "").strip()
    meta = (host.read_optional(disk / "md" / "metadata_version") or "").strip()
    if meta.startswith("external:") or level in ("", "container"):
        raise UnsupportedLayer(f"the dump target is on {name}, an md array with external "
                               f"metadata ({meta or 'a container'}), which the capture image "
                               f"does not assemble; dump to another target")
    if level not in _MD_LEVEL_MODULES:
        raise UnsupportedLayer(f"the dump target is on {name}, an md array of level {level}, "
                               f"which the capture image does not assemble")
    below = _below(host, disk, seen)
    if not below:
        raise UnsupportedLayer(f"the md array {name} shows no member devices in sysfs")
    return Layer(Kind.MD, name, below, ("md_mod", _MD_LEVEL_MODULES[level]), md_level=level,
                 md_uuid=_md_uuid(host, name))


def _md_uuid(host: Host, name: str) -> str:
    """The array's UUID from udev's /dev/disk/by-id/md-uuid-* link, "" when none shows it."""
    for link in host.listdir("/dev/disk/by-id"):
        if link.startswith("md-uuid-") and \
                host.resolve(f"/dev/disk/by-id/{link}").name == name:
            uuid = link.removeprefix("md-uuid-")
            return uuid if _MD_UUID.match(uuid) else ""
    return ""
