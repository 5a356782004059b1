"""Host-only driver discovery: which modules reach a block device or a NIC.

Everything is read through a Host, so tests hand in a fake /proc and /sys. For a
device the sysfs directory is followed to the real device, through partitions to their
disk and through dm/md `slaves/` to the disks below; then every ancestor under
/sys/devices contributes its bound driver's module (`driver/module`) and its `modalias`.
The result mixes module names and modalias strings; resolve_modules() turns both into
modules and ignores modaliases nothing matches (devices whose driver is built in).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import PurePosixPath

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host

_SYS_DEVICES = PurePosixPath("/sys/devices")
_MAJMIN = re.compile(r"^(\d+):(\d+)$")
_FS_MODULES = {
    "ext2": "ext4", "ext3": "ext4", "ext4": "ext4", "nfs": "nfsv4", "nfs4": "nfsv4",
    "cifs": "cifs", "smb3": "cifs", "msdos": "msdos", "vfat": "vfat", "fuseblk": "fuse",
}
# Stacked net devices (uevent DEVTYPE) and the module that creates them.
_NET_TYPES = {"vlan": "8021q", "bond": "bonding", "bridge": "bridge", "macvlan": "macvlan",
              "team": "team", "vxlan": "vxlan", "ipvlan": "ipvlan"}


class DeviceNotFound(UsageError):
    """A device named in the configuration does not exist on the host."""


def fs_module(fstype: str) -> str:
    """The module providing a filesystem type (ext2/3 are served by ext4, NFS by nfsv4
    which pulls in nfs; fuse.* by fuse); other types are named like their module."""
    if fstype.startswith("fuse."):
        return "fuse"
    return _FS_MODULES.get(fstype, fstype)


def _sys_block_dir(view: Host, dev: str) -> PurePosixPath:
    """The real /sys/devices/... directory of a block device given as path or MAJ:MIN."""
    if dev.startswith(("UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=")):
        key, _, value = dev.partition("=")
        dev = f"/dev/disk/by-{key.lower()}/{value}"
    m = _MAJMIN.match(dev)
    if m:
        cand = PurePosixPath(f"/sys/dev/block/{dev}")
    else:
        name = view.resolve(dev).name
        cand = PurePosixPath(f"/sys/class/block/{name}")
        if not view.exists(cand):
            try:
                st = view.stat(dev)
            except OSError:
                st = None
            if st is not None and stat.S_ISBLK(st.st_mode):
                cand = PurePosixPath(
                    f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    if not view.exists(cand):
        raise DeviceNotFound(f"block device {dev} not found (no {cand}); check the "
                             f"device name in the configuration")
    return view.resolve(cand)


def modules_for_block_device(view: Host, dev: str) -> set[str]:
    out: set[str] = set()
    _block(view, _sys_block_dir(view, dev), out, set())
    return out


def _block(view: Host, sysdir: PurePosixPath, out: set[str],
           seen: set[PurePosixPath]) -> None:
    if sysdir in seen:
        return
    seen.add(sysdir)
    if view.exists(sysdir / "partition"):
        sysdir = sysdir.parent
    if view.is_dir(sysdir / "dm"):
        out.add("dm_mod")
        uuid = (view.read_optional(sysdir / "dm" / "uuid") or "").strip()
        for prefix, module in (("CRYPT-", "dm_crypt"), ("mpath-", "dm_multipath"),
                               ("LVM-", "dm_mod")):
            if uuid.startswith(prefix):
                out.add(module)
    level = (view.read_optional(sysdir / "md" / "level") or "").strip()
    if level:
        out.add("md_mod")
        out.add({"raid4": "raid456", "raid5": "raid456", "raid6": "raid456"}.get(level, level))
    for slave in view.listdir(sysdir / "slaves"):
        _block(view, view.resolve(sysdir / "slaves" / slave), out, seen)
    _ancestors(view, sysdir, out)


def _ancestors(view: Host, start: PurePosixPath, out: set[str]) -> None:
    """Bound drivers' modules and modaliases of `start` and every parent device."""
    d = start
    while d != _SYS_DEVICES and _SYS_DEVICES in d.parents:
        module_link = d / "driver" / "module"
        if view.is_symlink(d / "driver") and view.exists(module_link):
            out.add(view.resolve(module_link).name)
        alias = (view.read_optional(d / "modalias") or "").strip()
        if alias:
            out.add(alias)
        d = d.parent


def modules_for_netdev(view: Host, ifname: str) -> set[str]:
    """Modules for a network interface and, for vlan/bond/bridge/team, the devices
    below it."""
    out: set[str] = set()
    _netdev(view, ifname, out, set())
    return out


def _uevent(view: Host, path: PurePosixPath) -> dict[str, str]:
    text = view.read_optional(path / "uevent") or ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _netdev(view: Host, ifname: str, out: set[str], seen: set[str]) -> None:
    if ifname in seen:
        return
    seen.add(ifname)
    base = PurePosixPath("/sys/class/net") / ifname
    if not view.exists(base):
        raise DeviceNotFound(f"network interface {ifname} not found (no {base}); check the "
                             f"interface name in the configuration")
    devtype = _uevent(view, base).get("DEVTYPE", "")
    if devtype in _NET_TYPES:
        out.add(_NET_TYPES[devtype])
    lowers = [x[len("lower_"):] for x in view.listdir(base) if x.startswith("lower_")]
    if view.is_dir(base / "bonding"):
        out.add("bonding")
        lowers += (view.read_optional(base / "bonding" / "slaves") or "").split()
    if view.is_dir(base / "bridge"):
        out.add("bridge")
        lowers += view.listdir(base / "brif")
    for lower in lowers:
        _netdev(view, lower, out, seen)
    if view.exists(base / "device"):
        _ancestors(view, view.resolve(base / "device"), out)
