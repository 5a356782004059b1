"""Storage stacks in a guest: the first kernel builds LVM, md RAID or btrfs on its virtio
disks with Debian's own tools (tests/support/storage_tools.py, never run on this machine),
loads the capture image and crashes; a third boot sets the stack up again and copies the
dump directory onto a scratch disk as a tar, which the host unpacks and reads.

All lvm/mdadm/mkfs runs happen inside QEMU guests, on disk image files.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.spec import ImageSpec, data_entry, dir_entry, file_entry, symlink_entry
from tests.support.debian_kernel import Kernel

from . import disks as disk_images
from .first_stage import (
    CAPTURE_APPEND,
    CHECK_LOADED_AND_CRASH,
    FIRST_KERNEL_APPEND,
    LOAD_FAILED_MARKER,
    LOADED_MARKER,
)
from .images import init_entry, module_entries, write_initramfs
from .qemu import VM, Drive, VMError, VMSpec

TAG = "MKKDUMPRD-STORAGE"
SETUP_FAILED = f"{TAG}: setup FAILED"
READBACK_DONE = f"{TAG}: readback done"
READBACK_FAILED = f"{TAG}: readback FAILED"
GUEST_MODULES = ("virtio_pci", "virtio_blk", "dm_mod", "dm_thin_pool", "md_mod", "raid1",
                 "btrfs", "xfs", "ext4")
TOOLS = ("/sbin/lvm", "/sbin/mdadm", "/sbin/mkfs.btrfs", "/bin/btrfs", "/sbin/mkfs.xfs",
         "/sbin/mke2fs")
# The guest's own LVM settings: no udev, no lvmetad/polld, no thin_check binary needed.
GUEST_LVM_CONF = """devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { use_lvmpolld = 0 thin_check_executable = "" }
backup { backup = 0 archive = 0 }
"""


@dataclass(frozen=True)
class Cycle:
    console: str        # first kernel and capture kernel
    readback: str       # the read-back boot
    dumps: Path         # the unpacked dump directory tree (what /var/crash held)


def add_busybox_applets(spec: ImageSpec, tools: Path) -> None:
    """The applets of the tools root's busybox as symlinks beside it (those `spec` lacks)."""
    applets = subprocess.run([str(tools / "bin/busybox"), "--list"], capture_output=True,
                             text=True, check=True).stdout.split()
    bindir = Host(tools).resolve("/bin")     # usr/bin in a merged-/usr root (sid's)
    for a in applets:
        if a != "busybox" and spec.get(f"{bindir}/{a}") is None:
            spec.add(symlink_entry(f"{bindir}/{a}", "busybox", "busybox applet"))


def _initramfs(kernel: Kernel, tools: Path, script: str, out: Path,
               files: Sequence[tuple[str, Path]] = (),
               binaries: Sequence[str] = ("/sbin/kexec", *TOOLS),
               modules: Sequence[str] = GUEST_MODULES) -> Path:
    # Everything from the tools root (bookworm, not merged-/usr), nothing from this machine:
    # two roots' libraries would clash under /lib.
    spec = ImageSpec()
    view = Host(tools)
    spec.extend(binary_entries(["/bin/busybox"], view, "shell and tools for the test /init"))
    add_busybox_applets(spec, tools)
    for d in ("/proc", "/sys", "/dev", "/tmp", "/mnt", "/run"):
        spec.add(dir_entry(d, "mount point"))
    for tool in binaries:
        spec.extend(e for e in binary_entries([tool], view, "storage tool in the guest")
                    if spec.get(str(e.path)) is None)
    spec.add(data_entry("/etc/lvm/lvm.conf", GUEST_LVM_CONF, "guest LVM settings"))
    mods, insmods = module_entries(kernel.kmoddir, kernel.kver, modules)
    spec.extend(mods)
    for dest, src in files:
        spec.add(file_entry(dest, src, "capture kernel and image", mode=0o644))
    spec.add(init_entry(
        "#!/bin/sh\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n"
        "mount -t proc proc /proc\nmount -t sysfs sysfs /sys\n"
        "mount -t devtmpfs devtmpfs /dev\nmkdir -p /run/lock/lvm /mnt\n"
        f"{insmods}\n{script}\n"))
    return write_initramfs(spec, out, "none")


def crash_with_stack(kernel: Kernel, tools: Path, capture_image: Path, setup: str,
                     drives: Sequence[Path], workdir: Path,
                     capture_append: str = CAPTURE_APPEND, timeout: float = 420.0,
                     extra_args: Sequence[str] = (),
                     binaries: Sequence[str] = ("/sbin/kexec", *TOOLS),
                     modules: Sequence[str] = GUEST_MODULES,
                     guestfwd: Sequence[str] = ()) -> str:
    """Boot, run `setup` (sh; a failing command fails the test), load `capture_image`, crash;
    returns the console once QEMU ended (the capture image's final action). `extra_args`
    go to QEMU (disks other than virtio ones); `binaries` and `modules` are the first
    stage's tools and kernel modules; `guestfwd` relays for user networking (restrict=on)."""
    script = (f"set -e\n{setup}\nset +e\necho '{TAG}: stack ready'\n"
              f"kexec -s -p /boot/vmlinuz --initrd=/boot/capture.img "
              f"--append={shlex.quote(capture_append)}\n"
              + CHECK_LOADED_AND_CRASH.replace("{tag}", TAG).replace(
                  "{failed}", LOAD_FAILED_MARKER).replace("{loaded}", LOADED_MARKER))
    # `set -e` ends /init on a failing setup command: the kernel then panics (init exited)
    # and QEMU ends; the missing "stack ready" line tells it apart.
    first = _initramfs(kernel, tools, script, workdir / "first-stage.img",
                       [("/boot/vmlinuz", kernel.vmlinuz), ("/boot/capture.img", capture_image)],
                       binaries=binaries, modules=modules)
    spec = VMSpec(kernel.vmlinuz, first, FIRST_KERNEL_APPEND,
                  drives=tuple(Drive(d) for d in drives), extra_args=tuple(extra_args),
                  guestfwd=tuple(guestfwd))
    with VM(spec, workdir / "console.log", timeout) as vm:
        m = vm.wait_for(f"{LOADED_MARKER}|{LOAD_FAILED_MARKER}|Kernel panic")
        if m.group(0) != LOADED_MARKER:
            raise VMError(f"the first kernel did not get to the crash:\n{vm.tail(60)}")
        vm.wait_exit()
        return vm.console()


def read_back(kernel: Kernel, tools: Path, activate: str, dump_dir: str,
              drives: Sequence[Path], workdir: Path, timeout: float = 240.0,
              binaries: Sequence[str] = ("/sbin/kexec", *TOOLS),
              modules: Sequence[str] = GUEST_MODULES) -> tuple[str, Path]:
    """Boot again with `drives` plus a scratch disk, run `activate` (sets the stack up and
    mounts it on /mnt), tar `dump_dir` onto the scratch disk; returns (console, unpacked).
    `binaries` and `modules` name what /init gets besides busybox (none for a kernel with
    all built in)."""
    scratch = disk_images.sparse_file(workdir / "readback.tar", 1024)
    dev = f"/dev/vd{chr(ord('a') + len(drives))}"
    script = (f"if {{ {activate}\n}} && tar -C {shlex.quote(dump_dir)} -cf {dev} . && sync; "
              f"then echo '{READBACK_DONE}'; else echo '{READBACK_FAILED}'; "
              f"ls -lR /mnt | head -50; fi\npoweroff -f\n")
    img = _initramfs(kernel, tools, script, workdir / "readback.img", binaries=binaries,
                     modules=modules)
    spec = VMSpec(kernel.vmlinuz, img, FIRST_KERNEL_APPEND.replace("crashkernel=256M ", ""),
                  drives=(*(Drive(d) for d in drives), Drive(scratch)))
    with VM(spec, workdir / "readback.log", timeout) as vm:
        m = vm.wait_for(f"{READBACK_DONE}|{READBACK_FAILED}")
        console = vm.console()
        vm.wait_exit()
    if m.group(0) != READBACK_DONE:
        raise VMError(f"read-back boot failed:\n{console[-4000:]}")
    out = workdir / "dumps"
    out.mkdir()
    subprocess.run(["tar", "-C", str(out), "-xf", str(scratch)], check=True,
                   capture_output=True)
    return console, out


def the_dump(dumps: Path) -> Path:
    """The one dump directory (127.0.0.1-DATE) under the unpacked tree."""
    found = sorted(p for p in dumps.iterdir() if p.name.startswith("127.0.0.1-"))
    assert len(found) == 1, f"dump directories: {[p.name for p in dumps.iterdir()]}"
    return found[0]
