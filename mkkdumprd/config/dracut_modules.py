"""dracut module names in `dracut_args --add` and what mkkdumprd does with each.

Names with a modules.d entry of their own (the storage layers) select it, as `build --add`
does; the others are warned about with the reason they are not needed or not available.
"""

from __future__ import annotations

from mkkdumprd.resources import data_dir

# dracut's name -> ours, for the modules that set up a dump target's storage.
SAME = ("lvm", "mdraid", "crypt", "btrfs", "multipath", "iscsi")
# dracut modules mkkdumprd needs no counterpart for, with the reason.
NOT_NEEDED = {
    "dm": "device-mapper's kernel module comes with the layer that needs it (lvm, crypt, "
          "multipath)",
    "dmraid": "BIOS RAID sets are not set up by the capture image; dump to another target",
    "dmsquash-live": "a live-media root is not a dump target",
    "network": "nfs and ssh targets bring the network up themselves",
    "network-legacy": "nfs and ssh targets bring the network up themselves",
    "network-manager": "nfs and ssh targets bring the network up themselves",
    "nfs": "an nfs target adds what it needs",
    "ssh-client": "an ssh target adds what it needs",
    "kernel-modules": "kernel modules come from host-only discovery, extra_modules and "
                      "--add-drivers",
    "base": "the image always has its own /init",
    "rootfs-block": "failure_action dump_to_rootfs mounts the root filesystem itself",
}


def our_module(name: str) -> tuple[str | None, str]:
    """(the modules.d entry `dracut --add NAME` means here or None, why none)."""
    if name in SAME:
        if (data_dir("modules.d") / name / "module.toml").is_file():
            return name, ""
        return None, f"this mkkdumprd has no {name} module"
    if name in NOT_NEEDED:
        return None, NOT_NEEDED[name]
    return None, "no mkkdumprd module does what this dracut module does"
