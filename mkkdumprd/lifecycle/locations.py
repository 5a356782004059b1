"""Default places, the same on every distribution unless configured.

The capture image for a kernel lives next to it, /boot/initramfs-KVERkdump.img, when /boot is
writable (Fedora's name, so existing tools find it), else /var/lib/mkkdumprd/. `build`
writes to `capture_image` and the loader reads `existing_capture_image`, which is the same
place whenever /boot has not changed between the two; when it has (a /boot remounted
read-only after the build), the loader still finds the image in the other place instead of
failing.

Standard library only: the loader imports this module, and it must run on a bare python3.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from mkkdumprd.host import Host

CONFIG = PurePosixPath("/etc/kdump.conf")
BOOT = PurePosixPath("/boot")
STATE_DIR = PurePosixPath("/var/lib/mkkdumprd")
# Not /run/lock or /tmp (kdumpctl's places): both are writable by every user, who could
# plant a symlink or hold the lock (lifecycle/lock.py). /run/mkkdumprd is root's, 0700.
RUN_DIR = PurePosixPath("/run/mkkdumprd")
LOCK_FILE = RUN_DIR / "lock"


def image_name(kver: str) -> str:
    return f"initramfs-{kver}kdump.img"


def boot_writable(host: Host) -> bool:
    return host.is_writable_dir(BOOT)


def capture_image(host: Host, kver: str) -> PurePosixPath:
    """Where the capture image for `kver` is written."""
    if boot_writable(host):
        return BOOT / image_name(kver)
    return STATE_DIR / image_name(kver)


def capture_image_candidates(host: Host, kver: str) -> tuple[PurePosixPath, PurePosixPath]:
    """Both places, the one `capture_image` picks first (hooks delete both on removal)."""
    first = capture_image(host, kver)
    other = (STATE_DIR if first.parent == BOOT else BOOT) / image_name(kver)
    return first, other


def existing_capture_image(host: Host, kver: str) -> PurePosixPath:
    """The capture image to load: the written place, else the other one if only it exists."""
    first, other = capture_image_candidates(host, kver)
    if not host.is_file(first) and host.is_file(other):
        return other
    return first
