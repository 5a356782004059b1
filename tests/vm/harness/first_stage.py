"""The first-kernel initramfs: load the capture kernel with kexec, then crash via sysrq.

Runs only inside a QEMU guest. Its /init mounts proc/sys/devtmpfs, runs
`kexec -s -p` (kexec_file_load) with the capture kernel and the capture image it carries,
checks /sys/kernel/kexec_crash_loaded, prints LOADED_MARKER and writes `c` to the guest's
/proc/sysrq-trigger. The capture kernel then boots the image under test.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from mkkdumprd.image.spec import ImageSpec, file_entry

from .images import busybox_entries, host_binary, init_entry, require_tool, write_initramfs

LOADED_MARKER = "MKKDUMPRD-TEST: capture kernel loaded, crashing now"
LOAD_FAILED_MARKER = "MKKDUMPRD-TEST: loading the capture kernel FAILED"

# Fedora's capture-kernel arguments, trimmed to what matters under QEMU; panic=-1 with
# QEMU's -no-reboot makes a dying capture kernel end the VM instead of hanging it.
CAPTURE_APPEND = ("console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=-1 "
                  "acpi_no_memhotplug transparent_hugepage=never novmcoredd cma=0 "
                  "hugetlb_cma=0")

FIRST_KERNEL_APPEND = "console=ttyS0 crashkernel=256M panic=-1 loglevel=4"

# The end of every first stage's /init: after the load command, check it worked (exit code
# and kexec_crash_loaded), print the marker and crash the guest (its own sysrq, never the
# host's). {failed}/{loaded} are filled by .format; {tag} names the harness in messages.
CHECK_LOADED_AND_CRASH = """rc=$?
if [ $rc != 0 ]; then
    echo "{failed}: kexec exited $rc"
    poweroff -f
fi
if [ "$(cat /sys/kernel/kexec_crash_loaded)" != 1 ]; then
    echo "{failed}: /sys/kernel/kexec_crash_loaded is not 1"
    poweroff -f
fi
echo "{loaded}"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
echo "{tag}: still alive after sysrq-c"
poweroff -f
"""

_INIT = """#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "MKKDUMPRD-TEST: first kernel up, loading the capture kernel"
kexec -s -p /boot/vmlinuz --initrd=/boot/capture.img --append={append}
""" + CHECK_LOADED_AND_CRASH.replace("{tag}", "MKKDUMPRD-TEST")


def build_first_stage(vmlinuz: Path, capture_image: Path, out: Path,
                      capture_append: str = CAPTURE_APPEND,
                      compression: str = "none") -> Path:
    """Write the first-stage initramfs to `out` and return it.

    Uncompressed by default: it mostly carries an already-compressed kernel and image, and
    decompressing under TCG only costs time.
    """
    spec = ImageSpec()
    spec.extend(busybox_entries())
    spec.extend(host_binary(require_tool("kexec"), "loads the capture kernel"))
    spec.add(file_entry("/boot/vmlinuz", vmlinuz, "capture kernel", mode=0o644))
    spec.add(file_entry("/boot/capture.img", capture_image, "capture image under test",
                        mode=0o644))
    spec.add(init_entry(_INIT.format(append=shlex.quote(capture_append),
                                     failed=LOAD_FAILED_MARKER, loaded=LOADED_MARKER)))
    return write_initramfs(spec, out, compression)
