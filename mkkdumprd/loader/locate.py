"""Find the kernel to load and the capture image to go with it (read through a Host).

Kernel search order, as Fedora's prepare_kdump_kernel: BOOT_IMAGE= of the running command
line when it names this kernel version, then the arch's names under /boot, then Boot
Loader Spec entries (/boot/loader/entries/*.conf, `version` + `linux`), then the modules
directory's own copy (/usr/lib/modules/KVER/vmlinuz: Fedora's kernels, and Debian's since
the kernel packages moved vmlinuz, config and System.map there). The capture image is
/boot/initramfs-KVERkdump.img when /boot is writable, else /var/lib/mkkdumprd/ (one rule for
build and load: mkkdumprd/lifecycle/locations.py).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from mkkdumprd.arch import ArchInfo
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.lifecycle.locations import existing_capture_image
from mkkdumprd.loader.cmdline import split_words

BOOT = PurePosixPath("/boot")
BLS_DIRS = ("/boot/loader/entries", "/efi/loader/entries", "/boot/efi/loader/entries")


def running_kver(host: Host) -> str:
    text = host.read_optional("/proc/sys/kernel/osrelease")
    if not text or not text.strip():
        where = host.path("/proc/sys/kernel/osrelease")
        raise OperationError(
            f"cannot read the running kernel version from {where}; pass --kver")
    return text.strip()


def proc_cmdline(host: Host) -> str:
    return (host.read_optional("/proc/cmdline") or "").strip()


def _boot_image(cmdline: str) -> PurePosixPath | None:
    for word in split_words(cmdline):
        if word.startswith("BOOT_IMAGE="):
            value = word[len("BOOT_IMAGE="):].strip('"')
            # GRUB writes "(hd0,gpt2)/vmlinuz-..." for a kernel on another partition.
            value = re.sub(r"^\([^)]*\)", "", value)
            if value.startswith("/"):
                return PurePosixPath(value)
    return None


def _bls_kernels(host: Host, kver: str) -> list[PurePosixPath]:
    found: list[PurePosixPath] = []
    for d in BLS_DIRS:
        for name in host.listdir(d):
            if not name.endswith(".conf"):
                continue
            text = host.read_optional(f"{d}/{name}") or ""
            keys: dict[str, str] = {}
            for line in text.splitlines():
                parts = line.strip().split(None, 1)
                if len(parts) == 2 and not parts[0].startswith("#"):
                    keys.setdefault(parts[0], parts[1].strip())
            linux = keys.get("linux")
            if linux and (keys.get("version") == kver or linux.endswith(kver)):
                # BLS paths are relative to the partition holding the entries.
                base = PurePosixPath(d).parent.parent
                found.append(base / linux.lstrip("/"))
    return found


def find_kernel(host: Host, arch: ArchInfo, kver: str) -> PurePosixPath:
    """The kernel image for `kver`; OperationError naming every place looked at."""
    tried: list[PurePosixPath] = []
    boot_image = _boot_image(proc_cmdline(host))
    if boot_image is not None and boot_image.name.endswith(kver):
        # With a separate /boot partition GRUB's path is relative to it.
        tried += [boot_image, BOOT / boot_image.relative_to("/")]
    tried += [BOOT / pattern.format(kver=kver) for pattern in arch.kernel_names]
    tried += _bls_kernels(host, kver)
    tried += [PurePosixPath(d) / kver / "vmlinuz" for d in ("/usr/lib/modules", "/lib/modules")]
    for cand in tried:
        if host.is_file(cand):
            return cand
    looked = ", ".join(dict.fromkeys(str(t) for t in tried))
    raise OperationError(
        f"no kernel image for {kver} found (looked at {looked}); pass it with --kernel")


def default_image(host: Host, kver: str) -> PurePosixPath:
    """Where the capture image for `kver` is: where `mkkdumprd build` writes it by default."""
    return existing_capture_image(host, kver)
