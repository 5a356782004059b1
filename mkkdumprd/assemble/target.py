"""The dump target as the capture kernel must find it, worked out at build time.

The capture image has no udev, so /dev/disk/by-* links do not exist there, and kernel
names may differ in the capture kernel: a local target's device (link, kernel name or
PARTUUID=) is turned into `UUID=` (found by busybox findfs at dump time) when the machine
the image is for shows the filesystem's UUID; a link without one becomes its kernel name
(with a warning). A local target without a device line is the filesystem holding `path`,
as in Fedora: the device comes from the mount table and `path` becomes relative to the
filesystem the capture kernel mounts. That is not the mount point's view when the mount
shows only part of the filesystem (mountinfo's root field: a bind mount, a btrfs
subvolume): the path is joined to that root, and a btrfs subvolume is mounted by its
`subvolid=` (from the mount's options), so the dump lands where the running system sees
`path`. Host-only builds check that the device exists and, when it is mounted, that
`path` exists on it; images for another machine (--no-hostonly) take the target as given.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.config.model import LOCAL_FSTYPES, KdumpConfig, TargetKind
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host, Mount
from mkkdumprd.storage.stack import Stack

_TAGS = {"UUID": "by-uuid", "LABEL": "by-label", "PARTUUID": "by-partuuid"}


@dataclass(frozen=True)
class ResolvedTarget:
    """A dump target as the capture kernel must find it: device or server, fs, path."""

    kind: TargetKind
    device: str | None          # what /init waits for: /dev/NAME, UUID=, LABEL=, PARTUUID=
    fstype: str | None          # None: mount tries the filesystems the kernel knows
    path: str                   # dump directory relative to the target's root
    host_device: PurePosixPath | None = None   # the node in the system view (host-only)
    server: str | None = None
    # Extra mount options the capture kernel needs to see the same tree (btrfs subvolid=N);
    # built only from digits and known names, never from free text.
    mount_options: str | None = None
    subvolume: str | None = None   # btrfs: the subvolume mounted (for messages)
    stack: Stack | None = None     # host-only: the block stack under a local target

    def describe(self) -> str:
        if self.kind is TargetKind.RAW:
            return f"raw {self.device}"
        if self.kind is TargetKind.LOCAL:
            sub = f" subvolume {self.subvolume}" if self.subvolume else ""
            return f"{self.fstype or 'local'} {self.device}{sub}:{self.path}"
        return f"{self.kind.value} {self.server}:{self.path}"


def resolve_target(config: KdumpConfig, system: Host,
                   hostonly: bool) -> tuple[ResolvedTarget, list[str]]:
    """The target for /init plus warnings; impossible targets raise UsageError."""
    t = config.target
    warnings: list[str] = []
    where = f"{t.where}: " if t.where else ""
    if t.kind in (TargetKind.NFS, TargetKind.SSH):
        return ResolvedTarget(t.kind, None, None, config.path, server=t.server), warnings
    if t.kind is TargetKind.RAW:
        if not t.device:
            raise UsageError(f"{where}a raw target needs a device (raw /dev/NAME)")
        dev, node = _device(t.device, system, hostonly, warnings, where, allow_tags=False)
        if node is not None:
            _check_readable(system, node, where)
        return ResolvedTarget(TargetKind.RAW, dev, None, config.path, host_device=node), warnings
    # local
    if not t.device:
        return _local_from_path(config, system, hostonly, warnings)
    dev, node = _device(t.device, system, hostonly, warnings, where, allow_tags=True)
    fstype = t.fstype
    if hostonly and node is not None:
        mnt = _mount_of_device(system, node, config.path)
        if mnt is not None:
            if fstype and mnt.fstype != fstype:
                raise UsageError(
                    f"{where}{t.device} holds {mnt.fstype}, not {fstype} as configured; "
                    f"fix the filesystem type in the target line"
                )
            fstype = fstype or mnt.fstype
            full = _seen_at(mnt, config.path)
            if full is not None and not system.is_dir(full):
                raise UsageError(
                    f"dump path {config.path} does not exist on the dump target {t.device} "
                    f"(mounted at {mnt.mountpoint}); create {full} first"
                )
    if fstype is None:
        warnings.append(
            f"filesystem type of {t.device} is unknown: the capture kernel will try every "
            f"filesystem it has (add its module with --add-drivers, e.g. ext4)"
        )
    return ResolvedTarget(TargetKind.LOCAL, dev, fstype, config.path, host_device=node), warnings


def _local_from_path(config: KdumpConfig, system: Host, hostonly: bool,
                     warnings: list[str]) -> tuple[ResolvedTarget, list[str]]:
    if not hostonly:
        raise UsageError(
            "a local target without a device is the filesystem holding the dump path on this "
            "machine, which --no-hostonly cannot use; give one with --target local:DEVICE:PATH"
        )
    real = str(system.resolve(config.path))
    best = system.mount_of(real)
    if best is None:
        raise UsageError(
            f"cannot find the filesystem holding {config.path} in /proc/self/mountinfo"
        )
    if best.fstype not in LOCAL_FSTYPES:
        raise UsageError(
            f"{config.path} is on a {best.fstype} filesystem ({best.source} at {best.mountpoint}), "
            f"which cannot be a dump target; set a target line ({', '.join(LOCAL_FSTYPES)}) "
            f"or a path on a disk filesystem"
        )
    if not system.is_dir(real):
        raise UsageError(f"dump path {config.path} does not exist; create it first")
    rel = "/" + posixpath.relpath(real, best.mountpoint) if real != best.mountpoint else "/"
    dev, node = _device(best.source, system, True, warnings, "", allow_tags=True)
    path, options, subvol = fs_view(best, rel)
    return ResolvedTarget(TargetKind.LOCAL, dev, best.fstype, path, host_device=node,
                          mount_options=options, subvolume=subvol), warnings


def fs_view(mount: Mount, rel: str) -> tuple[str, str | None, str | None]:
    """(path below what the capture kernel mounts, its mount options, btrfs subvolume) for
    `rel`, a path below `mount`'s mount point.

    mountinfo's root field is the directory of the filesystem shown at the mount point
    (not / for a bind mount or a btrfs subvolume). The capture kernel mounts the whole
    filesystem, or for btrfs the same subvolume by id, so the path is re-rooted there.
    """
    inside = posixpath.normpath(posixpath.join(mount.root or "/", rel.lstrip("/")))
    if mount.fstype != "btrfs":
        return inside, None, None
    opts = dict(o.partition("=")[::2] for o in mount.superopts.split(","))
    subvolid, subvol = opts.get("subvolid", ""), opts.get("subvol", "")
    if not subvolid.isdigit() or not subvol.startswith("/"):
        return inside, None, None
    if inside != subvol and not inside.startswith(subvol.rstrip("/") + "/"):
        return inside, None, None
    below = "/" + posixpath.relpath(inside, subvol) if inside != subvol else "/"
    return below, f"subvolid={subvolid}", subvol


def _mount_of_device(system: Host, node: PurePosixPath, path: str) -> Mount | None:
    """A mount of `node` showing `path` (a path from the filesystem's root), preferring one
    of the whole filesystem."""
    found = [m for m in system.mounts()
             if m.source.startswith("/dev/") and system.resolve(m.source) == node]
    shows = [m for m in found if _seen_at(m, path) is not None]
    return next((m for m in shows if m.root == "/"), shows[0] if shows else
                (found[0] if found else None))


def _seen_at(mount: Mount, path: str) -> str | None:
    """Where the running system sees `path` (from the filesystem's root) through `mount`,
    or None when the mount does not show it."""
    root = mount.root or "/"
    p = posixpath.normpath("/" + path.lstrip("/"))
    if root != "/" and p != root and not p.startswith(root.rstrip("/") + "/"):
        return None
    rest = posixpath.relpath(p, root)
    return mount.mountpoint if rest == "." else posixpath.join(mount.mountpoint, rest)


def _device(spec: str, system: Host, hostonly: bool, warnings: list[str], where: str,
            *, allow_tags: bool) -> tuple[str, PurePosixPath | None]:
    """(what /init waits for, the node in the system view or None)."""
    tag, sep, value = spec.partition("=")
    if sep and tag in _TAGS:
        if not allow_tags:
            raise UsageError(f"{where}{spec}: a raw target needs a device path, not {tag}=")
        if not hostonly:
            return spec, None
        link = f"/dev/disk/{_TAGS[tag]}/{value}"
        if not system.exists(link):
            raise UsageError(
                f"{where}target device {spec} not found on this machine ({link} is missing); "
                f"check the {tag} or build with --no-hostonly for another machine"
            )
        node = system.resolve(link)
        if tag == "PARTUUID":
            # busybox findfs knows UUID= and LABEL= only.
            uuid = _tag_of(system, node, "by-uuid")
            if uuid:
                return f"UUID={uuid}", node
        return spec, node
    if not spec.startswith("/dev/"):
        raise UsageError(f"{where}{spec}: expected /dev/NAME, UUID=, LABEL= or PARTUUID=")
    if not hostonly:
        if spec.startswith("/dev/disk/"):
            warnings.append(
                f"{spec}: the capture image has no udev, so this link will not exist there; "
                f"use the kernel name or UUID= with --no-hostonly"
            )
        return spec, None
    if not system.exists(spec):
        raise UsageError(
            f"{where}target device {spec} not found on this machine; check the name or build "
            f"with --no-hostonly for another machine"
        )
    node = system.resolve(spec)
    if allow_tags:
        # Kernel names can change between boots; the filesystem UUID cannot.
        uuid = _tag_of(system, node, "by-uuid")
        if uuid:
            return f"UUID={uuid}", node
    if PurePosixPath(spec) == node:
        return spec, node
    warnings.append(
        f"{spec} is a udev link, which the capture image does not have; it waits for {node} "
        f"instead, a kernel name that may differ in the capture kernel"
    )
    return str(node), node


def _check_readable(system: Host, node: PurePosixPath, where: str) -> None:
    """As Fedora's mkdumprd (one block read with dd): a raw target must be readable."""
    why = system.can_read(node)
    if why is not None:
        raise UsageError(
            f"{where}cannot read the raw device {node}: {why}; check the device "
            f"and run as root"
        )


def _tag_of(system: Host, node: PurePosixPath, kind: str) -> str | None:
    d = f"/dev/disk/{kind}"
    for name in system.listdir(d):
        if system.resolve(f"{d}/{name}") == node:
            return name
    return None


def resolve_rootfs(system: Host, hostonly: bool) -> tuple[ResolvedTarget | None, list[str]]:
    """The root filesystem as failure_action dump_to_rootfs reaches it, or None."""
    if not hostonly:
        return None, [
            "failure_action dump_to_rootfs needs the root filesystem of the machine the image "
            "is for, which --no-hostonly cannot know; the image runs final_action instead"
        ]
    root = next((m for m in reversed(system.mounts()) if m.mountpoint == "/"), None)
    if root is None or root.fstype not in LOCAL_FSTYPES or not root.source.startswith("/dev/"):
        what = f"{root.fstype} {root.source}" if root else "unknown"
        return None, [
            f"failure_action dump_to_rootfs: the root filesystem ({what}) is not a disk "
            f"filesystem the capture image can mount; the image runs final_action instead"
        ]
    warnings: list[str] = []
    dev, node = _device(root.source, system, True, warnings, "", allow_tags=True)
    path, options, subvol = fs_view(root, "/")
    return ResolvedTarget(TargetKind.LOCAL, dev, root.fstype, path, host_device=node,
                          mount_options=options, subvolume=subvol), warnings
