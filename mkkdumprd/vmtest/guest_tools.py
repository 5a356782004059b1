"""What a guest needs to build or read a scratch layout: this machine's storage tools with
their ELF closure (mkfs.*, lvm, mdadm, cryptsetup, btrfs), LVM settings for a guest
without udev, and the kernel modules (disk bus, device-mapper/md layers, filesystem) in
load order from the kernel's own module index, with the lines that insmod them.

Tools come from `tools` (the build's sysroot, `/` for this machine): the storage tools the
image under test carries come from the same place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mkkdumprd.assemble.builder import _canonical
from mkkdumprd.elf.entries import binary_entries, find_binary
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, ImageSpec, Kind, data_entry
from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.entries import module_entries
from mkkdumprd.kmod.index import ModuleIndex
from mkkdumprd.kmod.names import strip_compression
from mkkdumprd.quoting import shell_word

# The guest's own LVM settings: no udev (lvm makes the /dev/mapper nodes), no
# lvmetad/polld/monitoring, no thin_check binary, no metadata backups.
GUEST_LVM_CONF = """devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { use_lvmpolld = 0 thin_check_executable = "" locking_dir = "/run/lock/lvm" }
backup { backup = 0 archive = 0 }
"""
PACKAGES = {"mke2fs": "e2fsprogs", "mkfs.xfs": "xfsprogs", "mkfs.btrfs": "btrfs-progs",
            "btrfs": "btrfs-progs", "lvm": "lvm2", "mdadm": "mdadm",
            "cryptsetup": "cryptsetup-bin"}


@dataclass(frozen=True)
class GuestTools:
    entries: tuple[Entry, ...]
    insmod: str                 # shell lines loading the modules in order
    paths: Mapping[str, str]    # tool name -> its path in the guest


def tool_paths(names: Sequence[str], tools: Host) -> dict[str, str]:
    paths = {}
    for name in names:
        found = find_binary(tools, name)
        if found is None:
            raise UsageError(f"{name} not found in {tools.root}; `mkkdumprd test --vm` makes "
                             f"the scratch stack with it (package {PACKAGES.get(name, name)})")
        paths[name] = str(found)
    return paths


def tool_entries(paths: Mapping[str, str], tools: Host) -> list[Entry]:
    out = binary_entries(list(paths.values()), tools, "storage tool of the scratch stand-in")
    if "lvm" in paths:
        out.append(data_entry("/etc/lvm/lvm.conf", GUEST_LVM_CONF, "the guest's LVM settings"))
    return out


def module_lines(kmoddir: Path, names: Iterable[str]) -> tuple[list[Entry], str]:
    """The modules' entries (decompressed) and the insmod lines, skipping built-ins."""
    kver = kmoddir.name
    closure = resolve_modules(ModuleIndex.load(kmoddir, kver), names)
    entries = [e for e in module_entries(closure) if not str(e.path).endswith("/modules.load")]
    lines = [f"insmod {shell_word(f'/lib/modules/{kver}/{strip_compression(m.relpath)}')}"
             for m in closure.modules]
    return entries, "\n".join(lines) + ("\n" if lines else "")


def guest_tools(names: Sequence[str], modules: Iterable[str], tools: Host,
                kmoddir: Path | None) -> GuestTools:
    if kmoddir is None:
        raise UsageError("the scratch stack is made in the guest, which needs the kernel's "
                         "modules: pass --kmoddir (the kernel's /lib/modules/KVER)")
    mods, insmod = module_lines(kmoddir, modules)
    paths = tool_paths(names, tools)
    return GuestTools(tuple(tool_entries(paths, tools) + mods), insmod, paths)


def add_folded(spec: ImageSpec, entries: Iterable[Entry]) -> None:
    """Add `entries` below the spec's symlinked directories (a tools root laid out
    differently from this machine, /sbin a folder there and a link here, lands in the same
    places), leaving out paths the spec already holds: the first root's file wins."""
    links = {e.path: e.target for e in spec if e.kind is Kind.SYMLINK and e.target}
    for e in entries:
        path = _canonical(e.path, links)
        if path in spec or e.path in spec:
            continue
        spec.add(e if path == e.path else replace(e, path=path))
