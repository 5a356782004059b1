"""Finding the kernel (BOOT_IMAGE=, /boot names, BLS entries) and the capture image."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.arch import load_arch
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.loader import locate

KVER = "6.8.5-301.fc40.x86_64"


def _touch(root: Path, rel: str, text: str = "x") -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_vmlinuz_under_boot(tmp_path: Path) -> None:
    _touch(tmp_path, f"/boot/vmlinuz-{KVER}")
    got = locate.find_kernel(Host(tmp_path), load_arch("x86_64"), KVER)
    assert got == PurePosixPath(f"/boot/vmlinuz-{KVER}")


def test_vmlinuz_in_the_modules_directory(tmp_path: Path) -> None:
    # Debian unstable's (and Fedora's) layout: the image beside the modules, none in /boot.
    _touch(tmp_path, f"/usr/lib/modules/{KVER}/vmlinuz")
    got = locate.find_kernel(Host(tmp_path), load_arch("x86_64"), KVER)
    assert got == PurePosixPath(f"/usr/lib/modules/{KVER}/vmlinuz")
    _touch(tmp_path, f"/boot/vmlinuz-{KVER}")  # /boot first when both are there
    assert locate.find_kernel(Host(tmp_path), load_arch("x86_64"), KVER) == \
        PurePosixPath(f"/boot/vmlinuz-{KVER}")


def test_boot_image_first_and_relative_to_a_separate_boot(tmp_path: Path) -> None:
    _touch(tmp_path, f"/boot/vmlinuz-{KVER}")
    _touch(tmp_path, f"/boot/custom/vmlinuz-{KVER}")
    _touch(tmp_path, "/proc/cmdline", f"BOOT_IMAGE=(hd0,gpt2)/custom/vmlinuz-{KVER} ro\n")
    got = locate.find_kernel(Host(tmp_path), load_arch("x86_64"), KVER)
    assert got == PurePosixPath(f"/boot/custom/vmlinuz-{KVER}")


def test_boot_image_of_another_version_is_ignored(tmp_path: Path) -> None:
    _touch(tmp_path, f"/boot/vmlinuz-{KVER}")
    _touch(tmp_path, "/boot/vmlinuz-5.0", "old")
    _touch(tmp_path, "/proc/cmdline", "BOOT_IMAGE=/boot/vmlinuz-5.0 ro\n")
    got = locate.find_kernel(Host(tmp_path), load_arch("x86_64"), KVER)
    assert got == PurePosixPath(f"/boot/vmlinuz-{KVER}")


def test_bls_entry(tmp_path: Path) -> None:
    _touch(tmp_path, f"/boot/loader/entries/mid-{KVER}.conf",
           f"title T\nversion {KVER}\nlinux /mid/{KVER}/linux\noptions ro\n")
    _touch(tmp_path, f"/boot/mid/{KVER}/linux")
    got = locate.find_kernel(Host(tmp_path), load_arch("x86_64"), KVER)
    assert got == PurePosixPath(f"/boot/mid/{KVER}/linux")


def test_per_arch_names(tmp_path: Path) -> None:
    _touch(tmp_path, "/boot/vmlinux-6.1.0-50-powerpc64le")
    got = locate.find_kernel(Host(tmp_path), load_arch("ppc64le"), "6.1.0-50-powerpc64le")
    assert got.name == "vmlinux-6.1.0-50-powerpc64le"


def test_not_found_names_every_place(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match=rf"no kernel image for {KVER} found "
                       rf"\(looked at /boot/vmlinuz-{KVER}, /usr/lib/modules/{KVER}/vmlinuz, "
                       rf"/lib/modules/{KVER}/vmlinuz\); pass it with --kernel"):
        locate.find_kernel(Host(tmp_path), load_arch("x86_64"), KVER)


def test_capture_image_default(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert locate.default_image(host, KVER) == \
        PurePosixPath(f"/var/lib/mkkdumprd/initramfs-{KVER}kdump.img")
    _touch(tmp_path, f"/boot/initramfs-{KVER}kdump.img")
    assert locate.default_image(host, KVER) == PurePosixPath(f"/boot/initramfs-{KVER}kdump.img")


def test_running_kver(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="pass --kver"):
        locate.running_kver(Host(tmp_path))
    _touch(tmp_path, "/proc/sys/kernel/osrelease", f"{KVER}\n")
    assert locate.running_kver(Host(tmp_path)) == KVER
