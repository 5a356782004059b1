"""The host programs `mkkdumprd test --vm` runs, found on PATH or in the sbin folders."""

from __future__ import annotations

import shutil

from mkkdumprd.errors import UsageError

# What to install for each, named in the error (Debian package / Fedora package).
PACKAGES = {
    "busybox": "busybox",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.ext3": "e2fsprogs",
    "mkfs.ext2": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "makedumpfile": "makedumpfile",
    "ganesha.nfsd": "nfs-ganesha nfs-ganesha-vfs",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}


def find_tool(name: str) -> str:
    """The path of host program `name`; a missing one is a one-line UsageError."""
    # mkfs.*, debugfs and sshd live in sbin, which a non-root PATH may lack.
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pkg = PACKAGES.get(name)
        hint = f" (package {pkg})" if pkg else ""
        raise UsageError(f"{name} not found on PATH; `mkkdumprd test --vm` needs it{hint}")
    return path
