"""What the capture image needs to set up the stack under its target: the settings the
storage script reads (storage.sh.j2), a minimal lvm.conf, an mdadm.conf and a
multipath.conf.

Host-only builds name exactly the arrays, volumes and LUKS devices under the target, so
nothing else on the machine is assembled, activated or opened: lvm.conf's global_filter
accepts only the PVs found, mdadm.conf lists only the needed arrays with `AUTO -all`,
multipath.conf blacklists every WWID but the maps' own. Builds for another machine
(`--add lvm,mdraid,crypt,multipath`) know nothing of the layout: they activate every VG,
assemble every array, open every LUKS volume whose key the first kernel handed over and
make a multipath map of every WWID seen on two or more paths.
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
class MultipathMap:
    wwid: str
    dm_name: str
    path_wwid: str               # the paths' sysfs device/wwid; "" unknown
    paths: tuple[str, ...]       # kernel names of the paths on this machine


@dataclass(frozen=True)
class StorageSettings:
    """template_vars of the storage module: `storage.*` in the templates."""

    describe: str                # the stack in one line ("" for --add builds)
    md: tuple[MdArray, ...] = ()
    lvm: tuple[LogicalVolume, ...] = ()
    crypt: tuple[LuksVolume, ...] = ()
    multipath: tuple[MultipathMap, ...] = ()
    md_all: str = ""             # "1": assemble every array (no layout known)
    lvm_all: str = ""            # "1": activate every VG
    crypt_all: str = ""          # "1": open every LUKS volume with a handed-over key
    multipath_all: str = ""      # "1": a map of every WWID with two or more paths


def settings(stack: Stack | None, modules: tuple[str, ...],
             more: tuple[Stack, ...] = ()) -> StorageSettings:
    """The settings for the target's `stack` and the `more` stacks the image also sets up
    (the root filesystem's for failure_action dump_to_rootfs)."""
    if stack is None and not more:
        return StorageSettings(describe="", md_all="1" if "mdraid" in modules else "",
                               lvm_all="1" if "lvm" in modules else "",
                               crypt_all="1" if "crypt" in modules else "",
                               multipath_all="1" if "multipath" in modules else "")
    stacks = [s for s in (stack, *more) if s is not None]
    layers = list(dict.fromkeys(x for s in stacks for x in s.layers()))
    return StorageSettings(
        describe=stack.describe() if stack is not None else "",
        md=tuple(MdArray(x.name, x.md_uuid, tuple(b.name for b in x.below))
                 for x in layers if x.kind is Kind.MD),
        lvm=tuple(LogicalVolume(x.vg, x.lv, x.dm_name) for x in layers if x.kind is Kind.LVM),
        crypt=tuple(LuksVolume(x.luks_uuid, x.dm_name, x.below[0].name)
                    for x in layers if x.kind is Kind.CRYPT),
        multipath=tuple(MultipathMap(x.wwid, x.dm_name, x.path_wwid,
                                     tuple(b.name for b in x.below))
                        for x in layers if x.kind is Kind.MPATH),
    )


def _pv_paths(layer: Layer) -> list[str]:
    """The names lvm may see a PV under in the capture image (no udev: kernel names and
    the /dev/mapper nodes device-mapper tools create)."""
    out = [f"/dev/{layer.name}"]
    if layer.kind in (Kind.CRYPT, Kind.LVM, Kind.MPATH):
        out.append(f"/dev/mapper/{layer.dm_name}")
    return out


def lvm_conf(stack: Stack | None, more: tuple[Stack, ...] = ()) -> str:
    """lvm.conf for the capture image: no udev, no monitoring, no metadata backups written,
    and (host-only) a filter accepting only the PVs of the target (and of `more`)."""
    lines = ["# Written by mkkdumprd: LVM in the kdump capture image.",
             "devices {",
             "    obtain_device_list_from_udev = 0",
             "    use_devicesfile = 0",
             "    external_device_info_source = \"none\""]
    stacks = [s for s in (stack, *more) if s is not None]
    if stacks:
        pvs = [p for s in stacks for x in s.layers() if x.kind is Kind.LVM for b in x.below
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


def mdadm_conf(stack: Stack | None, more: tuple[Stack, ...] = ()) -> str:
    """mdadm.conf: host-only, only the target's (and `more`'s) arrays and no auto-assembly
    of others."""
    lines = ["# Written by mkkdumprd: md arrays in the kdump capture image.",
             "DEVICE partitions"]
    stacks = [s for s in (stack, *more) if s is not None]
    if not stacks:
        lines.append("AUTO +all")
    else:
        lines.append("AUTO -all")
        for x in dict.fromkeys(x for s in stacks for x in s.layers()):
            if x.kind is not Kind.MD:
                continue
            if x.md_uuid:
                lines.append(f"ARRAY /dev/{x.name} UUID={x.md_uuid}")
            else:
                devices = ",".join(f"/dev/{b.name}" for b in x.below)
                lines.append(f"ARRAY /dev/{x.name} devices={devices}")
    return "\n".join(lines) + "\n"


def multipath_conf(stack: Stack | None, more: tuple[Stack, ...] = ()) -> str:
    """multipath.conf for the capture image. Host-only: every WWID blacklisted but the
    maps' own (find_multipaths off, so a map is made from the first path seen), each map
    under the host's name. For another machine: a map of each WWID seen on two or more
    paths. Always: no udev database (the WWID is read from sysfs at once), the table pinned
    to what the image carries (service-time, the tur checker, the const prioritizer, over
    the hardware table's choices), and I/O fails when every path is gone instead of
    queueing forever."""
    maps = [x for s in (stack, *more) if s is not None for x in s.layers()
            if x.kind is Kind.MPATH]
    known = stack is not None or bool(more)
    lines = ["# Written by mkkdumprd: multipath in the kdump capture image.",
             "defaults {",
             "    user_friendly_names no",
             f"    find_multipaths {'off' if known else 'on'}",
             "    retrigger_tries 0",
             "    enable_foreign \"NONE\"",
             "}",
             "overrides {",
             "    path_selector \"service-time 0\"",
             "    path_checker tur",
             "    detect_checker no",
             "    prio const",
             "    detect_prio no",
             "    no_path_retry fail",
             "}"]
    if known:
        lines += ["blacklist {",
                  "    wwid \".*\"",
                  "}",
                  "blacklist_exceptions {"]
        lines += [f"    wwid \"^{_conf_regex(x.wwid)}$\"" for x in dict.fromkeys(maps)]
        lines += ["}", "multipaths {"]
        for x in dict.fromkeys(maps):
            lines += ["    multipath {", f"        wwid \"{x.wwid}\""]
            if x.dm_name != x.wwid:
                lines.append(f"        alias \"{x.dm_name}\"")
            lines.append("    }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _conf_regex(wwid: str) -> str:
    """`wwid` as a regular expression matching itself (stack.py allows only letters,
    digits, space and `._:-` in it)."""
    return wwid.replace(".", "\\.")
