"""The read-back boot: a second short guest that reads what the capture kernel wrote where
this machine cannot read it itself: a scratch disk (xfs, btrfs, a block stack), or the
real NFS export of --real-target (real_nfs.py, which also removes the test folder).

The same kernel boots a small initramfs (busybox, this machine's storage tools and the
layout's modules, guest_tools.py) with the scratch disks as the crash test left them plus
one blank raw disk; its /init runs `stack_script.readback` (sets the stack up, mounts the
filesystem read-only, writes the dump path's tree onto the raw disk as a tar) and prints a
marker. `boot` is the same for any script that ends in such a tar. This machine then
reads the tar with `tarfile`: nothing is mounted here and no storage tool runs here.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from mkkdumprd.errors import OperationError
from mkkdumprd.image.spec import Entry, ImageSpec, data_entry
from mkkdumprd.vmtest import stack_script
from mkkdumprd.vmtest.guest_files import busybox_entries, init_entry, write_initramfs
from mkkdumprd.vmtest.guest_tools import GuestTools, add_folded
from mkkdumprd.vmtest.qemu import VM, Drive, VMSpec
from mkkdumprd.vmtest.scratch import make_raw
from mkkdumprd.vmtest.scratch_layout import Layout, disk_name

DONE = "MKKDUMPRD-READBACK: done"
FAILED = "MKKDUMPRD-READBACK: FAILED"
TAR_MB = 1024
SCRIPT = "/readback.sh"
# A dump directory as the capture image names it: HOST-YYYY-MM-DD-HH:MM:SS.
DUMP_DIR = re.compile(r".+-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")


def take_newest_vmcore(tree: Path, where: str, out: Path) -> Path:
    """Move the vmcore of the newest dump directory in the read-back `tree` to `out`;
    `where` names the place it was read from in the errors."""
    dirs = sorted(p for p in tree.iterdir() if p.is_dir() and DUMP_DIR.fullmatch(p.name))
    if not dirs:
        raise OperationError(f"no dump directory under {where}")
    vmcore = dirs[-1] / "vmcore"
    if not vmcore.is_file():
        raise OperationError(f"{dirs[-1].name} under {where} holds "
                             f"{sorted(p.name for p in dirs[-1].iterdir())}, no complete "
                             "vmcore")
    vmcore.rename(out)
    return out


def init_script(insmod: str) -> str:
    return ("#!/bin/sh\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n"
            "mount -t proc proc /proc\nmount -t sysfs sysfs /sys\n"
            "mount -t devtmpfs devtmpfs /dev\nmount -t tmpfs tmpfs /run\n"
            "mount -t tmpfs tmpfs /tmp\n"
            f"{insmod}"
            f'if sh {SCRIPT} 2>&1; then echo "{DONE}"; else echo "{FAILED}"; fi\n'
            "poweroff -f\n")


def tar_position(drives: Sequence[Drive]) -> tuple[str, str]:
    """Where the tar disk goes: last on the bus of the last scratch disk; its bus and
    /dev name."""
    if not drives:
        return "virtio", "/dev/vda"
    bus = drives[-1].bus
    index = sum(1 for d in drives if d.bus == bus)
    kind = bus if bus in ("nvme", "virtio") else "sd"
    return bus, f"/dev/{disk_name(kind, index)}"


def boot(kernel: Path, entries: Sequence[Entry], insmod: str, script: Callable[[str], str],
         drives: Sequence[Drive], workdir: Path, memory_mb: int, accel: str,
         what: str, guestfwd: tuple[str, ...] = (), open_network: bool = False,
         timeout: float = 600.0) -> tuple[Path, str]:
    """Boot with `drives` plus a blank raw disk; /init loads the modules (`insmod`) and
    runs `script(tar_device)`. Returns (the unpacked tar, the console) when the script
    succeeded; an OperationError naming `what` and the log otherwise."""
    tar = make_raw(workdir / "readback.tar", TAR_MB)
    bus, node = tar_position(drives)
    spec = ImageSpec()
    spec.extend(busybox_entries())
    add_folded(spec, entries)
    spec.add(data_entry(SCRIPT, script(node), "read-back commands"))
    spec.add(init_entry(init_script(insmod)))
    img = write_initramfs(spec, workdir / "readback.img", "none")
    vm_spec = VMSpec(kernel, img, "console=ttyS0 panic=-1 loglevel=4",
                     drives=(*drives, Drive(tar, bus=bus)), memory_mb=memory_mb,
                     accel=accel, guestfwd=guestfwd, open_network=open_network)
    log = workdir / "readback.log"
    with VM(vm_spec, log, timeout) as vm:
        m = vm.wait_for(f"{DONE}|{FAILED}")
        vm.wait_exit()
        console = vm.console()
    if m.group(0) != DONE:
        tail = "; ".join(console[:m.start()].splitlines()[-6:])
        raise OperationError(f"the read-back boot could not read {what} ({log}): {tail}")
    return unpack(tar, workdir / "readback"), console


def read_back(kernel: Path, lay: Layout, tools: GuestTools, drives: Sequence[Drive],
              workdir: Path, memory_mb: int, accel: str, timeout: float = 600.0) -> Path:
    """The scratch layout set up again and its dump path copied out; the unpacked folder."""
    tree, _ = boot(kernel, tools.entries, tools.insmod,
                   lambda node: stack_script.readback(lay, node, tools.paths), drives,
                   workdir, memory_mb, accel, f"the scratch {lay.fstype}", timeout=timeout)
    return tree


def unpack(tar: Path, out: Path) -> Path:
    """Unpack the regular files and folders of the tar at the start of the raw disk
    `tar` into `out`: nothing outside `out`, no links or devices, no set-id bits or
    foreign owners (the guest wrote the tar)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar, "r:") as t:
            members = [_tamed(m) for m in t.getmembers() if _plain_inside(m)]
            if hasattr(tarfile, "data_filter"):
                t.extractall(out, members=members, filter="data")
            else:
                # Python 3.11.0-3.11.3 (Debian 12's python3.11 is 3.11.2) has no extraction
                # filters; the members were already limited to what the data filter lets
                # through, with the same modes and owners.
                t.extractall(out, members=members)
    except (tarfile.TarError, OSError) as exc:
        raise OperationError(f"the read-back disk {tar} holds no readable tar: {exc}") from None
    return out


def _plain_inside(m: tarfile.TarInfo) -> bool:
    """A regular file or folder whose name stays below the folder it is unpacked in."""
    name = PurePosixPath(m.name)
    return (m.isfile() or m.isdir()) and not name.is_absolute() \
        and ".." not in name.parts and "\0" not in m.name


def _tamed(m: tarfile.TarInfo) -> tarfile.TarInfo:
    """`m` as tarfile's data filter extracts it: no set-id or sticky bits, no group or
    other write, owned by whoever unpacks it."""
    m.mode &= 0o755
    if m.isfile():
        m.mode |= 0o600
    m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""
    return m
