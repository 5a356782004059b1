"""The stand-in for a local target: scratch disks with the same filesystem and block stack.

ext2/3/4 on a plain disk: made here (mkfs on a sparse file with the UUID/label) and read
back with debugfs, no extra step. Anything else — xfs, btrfs (with its subvolume by id),
LVM (thin too), md RAID, LUKS, partitions — is made by the guest that will be crashed:
the first stage runs `stack_script.prepare` with this machine's own tools
(guest_tools.py) on blank scratch disks placed at the host's disk names, then loads and
crashes; a read-back boot (readback.py) reads the dump out. The stack and the names come
from the storage discovery of the machine the image was built for (`discovered`), as the
image itself was planned; for an image given with --image, run.py recovers its build
request from the image (image_request.py) and the discovery runs again.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, data_entry
from mkkdumprd.storage.stack import Stack
from mkkdumprd.vmtest import readback, scratch, stack_script
from mkkdumprd.vmtest.first_stage import PREPARE
from mkkdumprd.vmtest.guest_tools import GuestTools, guest_tools
from mkkdumprd.vmtest.qemu import BUS_DRIVERS, Drive
from mkkdumprd.vmtest.scratch_layout import Layout, Place, disk_name, layout, place

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest

# The folders the capture image makes below the path (`<ip>-<date>`); lost+found and
# anything else on the filesystem is not a dump.
SCRATCH_MB = 512
GUEST_SCRATCH_MB = 1024     # xfs needs 300 MB; an LV, a pool or a LUKS header take some
# The PCI transport the virtio buses need beside their own driver.
_TRANSPORT = {"virtio": ("virtio_pci",), "scsi": ("virtio_pci",)}
BUS_ORDER = ("virtio", "scsi", "nvme", "sata")


def bus_drivers(bus: str) -> tuple[str, ...]:
    return (*_TRANSPORT.get(bus, ()), *BUS_DRIVERS[bus])


def missing(drivers: tuple[str, ...], present: frozenset[str]) -> tuple[str, ...]:
    return tuple(d for d in drivers if d not in present)


def choose_bus(present: frozenset[str], wanted: str | None) -> str:
    """The disk bus for a scratch disk: `wanted`, else the first the image has drivers for."""
    if wanted is not None:
        return wanted
    return next((b for b in BUS_ORDER if not missing(bus_drivers(b), present)), BUS_ORDER[0])


def qemu_bus(p: Place, present: frozenset[str], wanted: str | None) -> str:
    """The QEMU bus for a place: sdX is scsi or sata, as the image has drivers for."""
    if p.bus != "sd":
        return p.bus
    return wanted or ("scsi" if not missing(bus_drivers("scsi"), present) else "sata")


@dataclass(frozen=True)
class GuestBoot:
    """What the read-back boot and the first stage's tools need: the kernel the guest
    runs, its modules, where the tools come from, the guest's RAM and accelerator."""

    kernel: Path
    kmoddir: Path | None
    tools: Host
    memory_mb: int = 1024
    accel: str = "tcg"


@dataclass
class LocalStandIn:
    device: str
    fstype: str
    path: str
    disk: Path
    drives: tuple[Drive, ...]
    missing_drivers: tuple[str, ...]
    guestfwd: tuple[str, ...] = ()
    image: Path | None = None
    open_network: bool = False
    layout: Layout | None = None
    prepare: tuple[Entry, ...] = ()         # first-stage entries: tools, modules, PREPARE
    tools: GuestTools | None = None
    boot: GuestBoot | None = None
    workdir: Path | None = None

    def describe(self) -> str:
        bus = self.drives[-1].bus
        if self.layout is None or self.layout.on_host:
            return f"scratch {self.fstype} disk {self.disk} ({self.device}, {bus} bus)"
        return (f"scratch {self.layout.describe()} made by the guest on "
                f"{len(self.layout.places())} blank disk(s) ({self.device}, {bus} bus), "
                "read back by a second boot")

    def read_back(self, out: Path) -> Path:
        if self.layout is not None and not self.layout.on_host:
            return self._read_back_in_guest(out)
        top = "/" + self.path.strip("/")
        dirs = [e.name for e in scratch.ext_ls(self.disk, top)
                if e.is_dir and readback.DUMP_DIR.fullmatch(e.name)]
        if not dirs:
            raise OperationError(f"no dump directory under {top} on the scratch disk")
        where = f"{top.rstrip('/')}/{sorted(dirs)[-1]}"
        names = {e.name for e in scratch.ext_ls(self.disk, where)}
        if "vmcore" not in names:
            raise OperationError(f"{where} on the scratch disk holds {sorted(names)}, "
                                 "no complete vmcore")
        return scratch.ext_dump(self.disk, f"{where}/vmcore", out)

    def _read_back_in_guest(self, out: Path) -> Path:
        assert self.layout and self.tools and self.boot and self.workdir
        tree = readback.read_back(self.boot.kernel, self.layout, self.tools, self.drives,
                                  self.workdir, self.boot.memory_mb, self.boot.accel)
        return readback.take_newest_vmcore(tree, f"{self.path} on the scratch {self.fstype}",
                                           out)

    def close(self) -> str | None:
        return None


def discovered(request: BuildRequest | None) -> tuple[Stack | None, str | None, str | None]:
    """(the stack, the filesystem UUID, the btrfs subvolume) of the request's first target
    as its build found them on its machine (host-only), else (None, None, None)."""
    if request is None or not request.hostonly:
        return None, None, None
    from mkkdumprd.assemble.target import resolve_target
    from mkkdumprd.storage.discover import with_stack

    target, _ = resolve_target(request.config, request.machine, True)
    fs_uuid = None
    if target.device and target.device.startswith("UUID="):
        fs_uuid = target.device[5:]
    stacked = with_stack(target, request.machine, True)
    stack = stacked.stack if stacked.stack is not None and stacked.stack.modules() else None
    return stack, fs_uuid, target.subvolume


def _placed(disks: dict[Place, Path], present: frozenset[str], wanted: str | None,
            workdir: Path) -> tuple[Drive, ...]:
    """The scratch disks at their places, small empty disks filling the gaps on each bus."""
    by_bus: dict[str, dict[int, Path]] = {}
    for p, path in disks.items():
        bus = qemu_bus(p, present, wanted)
        if p.index in by_bus.setdefault(bus, {}):
            continue                    # two partitions of one disk: made once
        by_bus[bus][p.index] = path
    drives: list[Drive] = []
    for bus, at in by_bus.items():
        for i in range(max(at) + 1):
            disk = at.get(i) or scratch.make_raw(workdir / f"filler-{bus}{i}.img", 1)
            drives.append(Drive(disk, bus=bus))
    return tuple(drives)


def _disks(lay: Layout, workdir: Path) -> dict[Place, Path]:
    """One blank scratch file per disk of the layout (partitioned when the host's is)."""
    out: dict[Place, Path] = {}
    made: dict[str, Path] = {}
    for p in lay.places():
        if p.disk in made:
            raise UsageError(f"the target's stack uses two partitions of {p.disk}; a stand-in "
                             "makes one partition per disk")
        path = workdir / f"scratch-{p.name}.img"
        made[p.disk] = (scratch.make_partitioned(path, p.partition, GUEST_SCRATCH_MB)
                        if p.partition else scratch.make_raw(path, GUEST_SCRATCH_MB))
        out[p] = made[p.disk]
    return out


def local_stand_in(target: Mapping[str, Any], modules: frozenset[str], workdir: Path,
                   bus: str | None, request: BuildRequest | None,
                   boot: GuestBoot | None) -> LocalStandIn:
    device = str(target.get("device") or "")
    tag = device.partition("=")[0]
    if tag not in ("UUID", "LABEL") and not device.startswith("/dev/"):
        raise UsageError(f"the image finds its target as {device or 'nothing'}; a "
                         "stand-in needs UUID=, LABEL= or a /dev name")
    if target.get("stack") and request is None:
        raise UsageError(f"the image's target is on {target['stack']}; the stand-in builds "
                         "that stack from the storage discovery of the build, which needs "
                         "its request: give -c/--target instead of --image")
    stack, fs_uuid, subvolume = discovered(request)
    lay = layout(target, stack, fs_uuid or str(uuidlib.uuid4()), subvolume)
    if stack is None:
        if device.startswith("/dev/"):
            where = place(device.removeprefix("/dev/"))
        else:
            chosen = choose_bus(modules, bus)
            kind = chosen if chosen in ("virtio", "nvme") else "sd"
            where = place(disk_name(kind, 0))
        lay = replace(lay, plain=where)
    path = lay.path
    fstype = lay.fstype
    if lay.on_host:
        content = scratch.tree(workdir / "scratch-fs", path.strip("/") or ".")
        disk = scratch.make_fs(workdir / "scratch.img", fstype, lay.fs_uuid, SCRATCH_MB,
                               content, lay.label)
        assert lay.plain is not None
        drives = _placed({lay.plain: disk}, modules, bus, workdir)
        return LocalStandIn(device, fstype, path, disk, drives,
                            missing(bus_drivers(drives[-1].bus), modules), layout=lay)
    if boot is None:
        raise UsageError(f"a scratch {lay.describe()} is made by the guest, which needs "
                         "the kernel it boots")
    disks = _disks(lay, workdir)
    drives = _placed(disks, modules, bus, workdir)
    buses = tuple(dict.fromkeys(d.bus for d in drives))
    guest_mods = (*(m for b in buses for m in bus_drivers(b)), *lay.kernel_modules())
    tools = guest_tools(lay.tools(), guest_mods, boot.tools, boot.kmoddir)
    script = tools.insmod + stack_script.prepare(lay, tools.paths)
    prepare = (*tools.entries, data_entry(PREPARE, script, "makes the scratch stand-in"))
    lacking = tuple(dict.fromkeys(m for b in buses for m in missing(bus_drivers(b), modules)))
    return LocalStandIn(device, fstype, path, next(iter(disks.values())), drives, lacking,
                        layout=lay, prepare=prepare, tools=tools, boot=boot, workdir=workdir)
