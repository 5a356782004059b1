"""`dracut_args --mount "SRC DEST FSTYPE [OPTS [FREQ [PASSNO]]]"`: RHEL 7's way of naming
the dump target, read as the target it describes.

Fedora's rules (kdump-utils: kdump-lib.sh `is_mount_in_dracut_args`, kdumpctl
`parse_config`): the device is the first field and the filesystem type the third; only one
`--mount` is allowed and no other target may be configured (config/kdumpconf.py refuses a
second target); the dump goes to `<DEST>/<path>`, i.e. `path` relative to the filesystem's
root, which is what a modern `FSTYPE DEVICE` line means. DEST is where dracut mounted it;
the capture image mounts at its own place, so it does not matter. OPTS other than
`defaults`/rw are not applied (the capture image mounts with its own options) and say so.
`config show` writes the modern line (`ext4 UUID=...` or `nfs HOST:/EXPORT`).
"""

from __future__ import annotations

from mkkdumprd.config import values
from mkkdumprd.config.model import LOCAL_FSTYPES, Target, TargetKind
from mkkdumprd.errors import Location

FORM = '--mount "DEVICE MOUNTPOINT FSTYPE [OPTIONS]"'
_HARMLESS_OPTIONS = frozenset({"defaults", "rw", "auto", "nofail", "noauto", "_netdev",
                               "x-systemd.automount", "nobootwait"})


def parse_mount(arg: str, where: Location) -> tuple[Target | None, list[str], list[str]]:
    """The target `arg` (the --mount value) describes, and errors and warnings."""
    fields = arg.split()
    if len(fields) < 3:
        return None, [f"dracut_args --mount {arg!r} needs at least a device, a mount point "
                      f"and a filesystem type: {FORM}"], []
    if len(fields) > 6:
        return None, [f"dracut_args --mount {arg!r} has more than six fields: {FORM}"], []
    src, _dest, fstype = fields[:3]
    warnings: list[str] = []
    opts = [o for o in (fields[3].split(",") if len(fields) > 3 else [])
            if o and o not in _HARMLESS_OPTIONS]
    if opts:
        warnings.append(f"dracut_args --mount options {','.join(opts)} are not applied: the "
                        "capture image mounts the target with its own options")
    if fstype in ("nfs", "nfs4"):
        split = values.split_nfs(src)
        if isinstance(split, str):
            return None, [f"dracut_args --mount nfs device: {split}"], warnings
        return Target(TargetKind.NFS, server=src, where=where), [], warnings
    if fstype not in LOCAL_FSTYPES:
        return None, [f"dracut_args --mount filesystem type {fstype!r} is not supported; use "
                      f"one of {', '.join(LOCAL_FSTYPES)}, nfs or nfs4"], warnings
    err = values.check_device(src)
    if err:
        return None, [f"dracut_args --mount device: {err}"], warnings
    return Target(TargetKind.LOCAL, device=src, fstype=fstype, where=where), [], warnings
