"""What the capture image needs to set up the stack under its target: the settings the
storage script reads (storage.sh.j2), a minimal lvm.conf and an mdadm.conf.

Host-only builds name exactly the arrays, volumes and LUKS devices under the target, so
nothing else on the machine is assembled, activated or opened: lvm.conf's global_filter
accepts only the PVs found, mdadm.conf lists only the needed arrays with `AUTO -all`.
Builds for another machine (`--add lvm,mdraid,crypt`) know nothing of the layout: they
activate every VG, assemble every array and open every LUKS volume whose key the first
kernel handed over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mkkdumprd.storage.stack import Kind, Layer, Stack

# The description under which the first kernel's keyring holds a volume key, as
# kdump-utils names it (the loader hands it to the kernel, the capture kernel restores it
# into its user keyring under the same description).
KEY_PREFIX = "kdump-cryptsetup:vk-"


@dataclass(frozen=True)
class MdArray:
    name: str                    # md0
    uuid: str                    # mdadm's form; "" when unknown (members named instead)
    members: tuple[str, ...]     # kernel names of the members on this machine


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    lv: str
    dm_name: str


@dataclass(frozen=True)
class LuksVolume:
    uuid: str
    dm_name: str
    device: str                  # kernel name of the device under it on this machine


@dataclass(frozen=True)
class StorageSettings:
    """template_vars of the storage module: `storage.*` in the templates."""

    describe: str                # the stack in one line ("" for --add builds)
    md: tuple[MdArray, ...] = ()
    lvm: tuple[LogicalVolume, ...] = ()
    crypt: tuple[LuksVolume, ...] = ()
    md_all: str = ""             # "1": assemble every array (no layout known)
    lvm_all: str = ""            # "1": activate every VG
    crypt_all: str = ""          # "1": open every LUKS volume with a handed-over key


def settings(stack: Stack | None, modules: tuple[str, ...]) -> StorageSettings:
    if stack is None:
        return StorageSettings(describe="", md_all="1" if "mdraid" in modules else "",
                               lvm_all="1" if "lvm" in modules else "",
                               crypt_all="1" if "crypt" in modules else "")
    layers = stack.layers()
    return StorageSettings(
        describe=stack.describe(),
        md=tuple(MdArray(x.name, x.md_uuid, tuple(b.name for b in x.below))
                 for x in layers if x.kind is Kind.MD),
        lvm=tuple(LogicalVolume(x.vg, x.lv, x.dm_name) for x in layers if x.kind is Kind.LVM),
        crypt=tuple(LuksVolume(x.luks_uuid, x.dm_name, x.below[0].name)
                    for x in layers if x.kind is Kind.CRYPT),
    )


def _pv_paths(layer: Layer) -> list[str]:
    """The names lvm may see a PV under in the capture image (no udev: kernel names and
    the /dev/mapper nodes device-mapper tools create)."""
    out = [f"/dev/{layer.name}"]
    if layer.kind in (Kind.CRYPT, Kind.LVM):
        out.append(f"/dev/mapper/{layer.dm_name}")
    return out


def lvm_conf(stack: Stack | None) -> str:
    """lvm.conf for the capture image: no udev, no monitoring, no metadata backups written,
    and (host-only) a filter accepting only the target's PVs."""
    lines = ["# Written by mkkdumprd: LVM in the kdump capture image.",
             "devices {",
             "    obtain_device_list_from_udev = 0",
             "    use_devicesfile = 0",
             "    external_device_info_source = \"none\""]
    if stack is not None:
        pvs = [p for x in stack.layers() if x.kind is Kind.LVM for b in x.below
               for p in _pv_paths(b)]
        accept = ", ".join(f'"a|^{re.escape(p)}$|"' for p in dict.fromkeys(pvs))
        lines.append(f'    global_filter = [ {accept}, "r|.*|" ]')
    lines += ["}",
              "activation {",
              "    udev_sync = 0",
              "    udev_rules = 0",
              "    monitoring = 0",
              "}",
              "backup {",
              "    backup = 0",
              "    archive = 0",
              "}",
              "global {",
              "    locking_dir = \"/run/lock/lvm\"",
              "    use_lvmpolld = 0",
              # Activation of a thin pool runs thin_check first; the image does not carry
              # thin-provisioning-tools (the first kernel checks the pool at boot).
              "    thin_check_executable = \"\"",
              "}",
              ""]
    return "\n".join(lines)


def mdadm_conf(stack: Stack | None) -> str:
    """mdadm.conf: host-only, only the target's arrays and no auto-assembly of others."""
    lines = ["# Written by mkkdumprd: md arrays in the kdump capture image.",
             "DEVICE partitions"]
    if stack is None:
        lines.append("AUTO +all")
    else:
        lines.append("AUTO -all")
        for x in stack.layers():
            if x.kind is not Kind.MD:
                continue
            if x.md_uuid:
                lines.append(f"ARRAY /dev/{x.name} UUID={x.md_uuid}")
            else:
                devices = ",".join(f"/dev/{b.name}" for b in x.below)
                lines.append(f"ARRAY /dev/{x.name} devices={devices}")
    return "\n".join(lines) + "\n"
