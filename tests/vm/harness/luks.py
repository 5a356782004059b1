"""A first stage for the LUKS proof: Debian unstable's cryptsetup (>= 2.7) and mke2fs set the
volume up, the project's own loader (this machine's python3, harness/python_guest.py's
pieces) loads the capture kernel with kexec_file_load, so the loader's CRASH_DM_CRYPT key
hand-over (mkkdumprd/loader/crypt_keys.py) runs for real.

The sid tools go in first; the interpreter and its libraries only where sid has no file of
that path. Both roots are merged-/usr, and a newer glibc runs bookworm's python3: one libc
and one ld.so, sid's. All cryptsetup runs happen inside the guest, on a disk image file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.spec import ImageSpec, dir_entry, file_entry
from mkkdumprd.vmtest import first_stage as fs
from mkkdumprd.vmtest import guest_python as gp
from mkkdumprd.vmtest.guest_files import init_entry, write_initramfs

from .storage import add_busybox_applets

SID_TOOLS = ("/bin/busybox", "/sbin/cryptsetup", "/sbin/mke2fs")


def first_stage(kernel: Path, tools: Path, capture_image: Path, out: Path, script: str,
                binaries: Sequence[str] = SID_TOOLS) -> Path:
    """The first-kernel initramfs: sid's `binaries`, busybox applets, python3 and the
    loader, the capture kernel and image; /init is `script` (fs.init_script's)."""
    spec = ImageSpec()
    view = Host(tools)
    for tool in binaries:
        spec.extend(e for e in binary_entries([tool], view, "sid tool in the first stage")
                    if spec.get(str(e.path)) is None)
    add_busybox_applets(spec, tools)
    modules = gp.trace_loader_modules(kernel)
    for e in gp.python_entries(modules) + gp.loader_entries(modules, "x86_64"):
        if spec.get(str(e.path)) is None:
            spec.add(e)
    for d in ("/proc", "/sys", "/dev", "/tmp", "/mnt", "/run", "/boot"):
        if spec.get(d) is None:
            spec.add(dir_entry(d, "mount point"))
    spec.add(file_entry(fs.KERNEL, kernel, "capture kernel", mode=0o644))
    spec.add(file_entry(fs.IMAGE, capture_image, "capture image", mode=0o644))
    spec.add(init_entry(script))
    return write_initramfs(spec, out, "none")
