"""The build's view of the storage under a local target: the stack found host-only, the
device the capture image waits for, and which modules.d entries set it up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import PurePosixPath

from mkkdumprd.assemble.target import ResolvedTarget
from mkkdumprd.config.model import TargetKind
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.storage.stack import Kind, discover

STORAGE_MODULES = ("lvm", "mdraid", "crypt", "btrfs", "multipath", "iscsi")


def with_stack(target: ResolvedTarget, machine: Host, hostonly: bool) -> ResolvedTarget:
    """`target` with the stack under it (host-only, local). A stacked target is awaited by
    the node the image's own tools create (/dev/mapper/NAME, /dev/mdN): the filesystem's
    UUID may also show on a RAID1 member or a snapshot, which findfs could pick."""
    node = target.host_device
    if not hostonly or target.kind is not TargetKind.LOCAL or node is None:
        return target
    if not machine.exists(PurePosixPath("/sys/class/block") / node.name):
        return target
    uuid = target.device[5:] if target.device and target.device.startswith("UUID=") else None
    stack = discover(machine, node, target.fstype or "", uuid)
    top = stack.top
    device = target.device
    if top.kind in (Kind.LVM, Kind.CRYPT, Kind.MPATH):
        device = f"/dev/mapper/{top.dm_name}"
    elif top.kind is Kind.MD:
        device = f"/dev/{top.name}"
    return replace(target, stack=stack, device=device)


def storage_modules(target: ResolvedTarget, add: Sequence[str]) -> list[str]:
    """The modules.d entries the target's stack needs plus those asked for with --add."""
    found = target.stack.modules() if target.stack is not None else []
    wanted = list(dict.fromkeys([*found, *add]))
    stacked = [n for n in wanted if n in STORAGE_MODULES]
    if stacked and target.kind is not TargetKind.LOCAL:
        raise UsageError(f"--add {','.join(stacked)}: storage modules set up a local dump "
                         f"target; this target is {target.kind.value}")
    if "iscsi" in wanted and "iscsi" not in found:
        raise UsageError(
            "--add iscsi: the capture image logs in to the portal, target and LUN of the "
            "machine's iSCSI session, which only host-only discovery reads (/sys/class/"
            "iscsi_session, /etc/iscsi); build host-only on the machine whose dump target "
            "is on the iSCSI LUN (or with --sysroot of its tree)")
    return wanted
