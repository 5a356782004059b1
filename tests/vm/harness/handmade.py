"""A capture image the harness assembles itself, independent of `mkkdumprd build`.

It exists to prove the harness (first stage, QEMU, disks, read-back) on its own, so a
failing product test points at the product and not at the harness.
"""

from __future__ import annotations

from pathlib import Path

from mkkdumprd.image.spec import ImageSpec

from .images import (
    busybox_entries,
    host_binary,
    init_entry,
    module_entries,
    require_tool,
    write_initramfs,
)

DONE_MARKER = "MKKDUMPRD-SELFTEST: dump saved"
FAILED_MARKER = "MKKDUMPRD-SELFTEST: dump FAILED"

_HEAD = """#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
fail() {{ echo "{failed}: $*"; reboot -f; }}
{insmod}
i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no /dev/vda after 10 s"
    sleep 0.1
done
"""

_LOCAL = """mount -t ext4 /dev/vda /mnt || fail "mount /dev/vda"
d=/mnt/var/crash/127.0.0.1-$(date +%Y-%m-%d-%H:%M:%S)
mkdir -p "$d" || fail "mkdir $d"
makedumpfile --dump-dmesg /proc/vmcore "$d/vmcore-dmesg.txt" || fail "dump-dmesg"
makedumpfile -l -d 31 /proc/vmcore "$d/vmcore-incomplete" || fail "makedumpfile"
mv "$d/vmcore-incomplete" "$d/vmcore"
sync
umount /mnt
echo "{done}"
reboot -f
"""

_RAW = """makedumpfile -F -l -d 31 /proc/vmcore | dd of=/dev/vda bs=1M conv=fsync 2>/dev/null \\
    || fail "makedumpfile -F to /dev/vda"
sync
echo "{done}"
reboot -f
"""


def build_handmade_capture(kmoddir: Path, kver: str, out: Path, target: str) -> Path:
    """`target` is "local" (ext4 on /dev/vda, /var/crash) or "raw" (/dev/vda)."""
    spec = ImageSpec()
    spec.extend(busybox_entries())
    spec.extend(host_binary(require_tool("makedumpfile"), "core collector"))
    mods = ["virtio_pci", "virtio_blk"] + (["ext4"] if target == "local" else [])
    entries, insmod = module_entries(kmoddir, kver, mods)
    spec.extend(entries)
    body = {"local": _LOCAL, "raw": _RAW}[target]
    script = _HEAD.format(failed=FAILED_MARKER, insmod=insmod) + body.format(done=DONE_MARKER)
    spec.add(init_entry(script))
    return write_initramfs(spec, out, "zstd")
