"""Debian's storage tools for the storage VM tests, never installed on this machine:
lvm2, mdadm, btrfs-progs, xfsprogs and e2fsprogs (with busybox-static, makedumpfile and
libc6) of bookworm amd64, unpacked with `dpkg-deb -x` into a root. The guest's first kernel
runs them to build the stack; `mkkdumprd build --sysroot` takes the capture image's tools
from the same root. Packages come through a private apt state (foreign_sysroot's), so
this machine's dpkg and block devices are never touched. Cached in
$MKKDUMPRD_TEST_CACHE/storage-tools-x86_64.

`storage_tools("iscsi")` is bookworm's open-iscsi with the basic tools, in
$MKKDUMPRD_TEST_CACHE/storage-tools-x86_64-iscsi.

`storage_tools("sid")` is the same from Debian unstable with the LUKS test's tools only:
cryptsetup >= 2.7 (bookworm has 2.6), whose `--link-vk-to-keyring` and
`--volume-key-keyring` the CRASH_DM_CRYPT hand-over needs; cached in
$MKKDUMPRD_TEST_CACHE/storage-tools-x86_64-sid.

`storage_tools("multipath")` is the bookworm root plus multipath-tools (the multipath test
only, so the other tests' cached root is not rebuilt); cached in
$MKKDUMPRD_TEST_CACHE/storage-tools-x86_64-multipath.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from tests.support.debian_kernel import CACHE
from tests.support.foreign_sysroot import _SID, FLAVOURS, _Apt, _merge_usr_links

PACKAGES = ("busybox-static", "makedumpfile", "libc6", "lvm2", "mdadm", "btrfs-progs",
            "xfsprogs", "e2fsprogs", "cryptsetup-bin", "kexec-tools")
SID_PACKAGES = ("busybox-static", "makedumpfile", "libc6", "e2fsprogs", "cryptsetup-bin")
MULTIPATH_PACKAGES = (*PACKAGES, "multipath-tools")
# The iSCSI test's root: open-iscsi's iscsistart logs in from the guest's first kernel and
# from the capture image (no iscsid, no node database).
ISCSI_PACKAGES = ("busybox-static", "makedumpfile", "libc6", "e2fsprogs", "kexec-tools",
                  "open-iscsi")


def storage_tools(suite: str = "bookworm") -> Path:
    """The cached root (built on first use: ~40 MB of packages, about a minute)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    sid = suite == "sid"
    suffix = f"-{suite}" if suite in ("sid", "multipath", "iscsi") else ""
    packages = {"sid": SID_PACKAGES, "multipath": MULTIPATH_PACKAGES,
                "iscsi": ISCSI_PACKAGES}.get(suite, PACKAGES)
    root = CACHE / f"storage-tools-x86_64{suffix}"
    recipe = " ".join(packages) + "\n"
    with open(CACHE / f".lock-storage-tools{suffix}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = root / ".ready"
        if ready.exists() and ready.read_text() == recipe:
            return root
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        if sid:
            apt = _Apt(CACHE / "apt-x86_64-storage-sid", "amd64", _SID)
        else:
            apt = _Apt(CACHE / f"apt-x86_64-storage{suffix}", "amd64",
                       FLAVOURS["x86_64"].userland_sources)
        apt.update()
        for deb in apt.download_closure(packages):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        _merge_usr_links(root)
        ready.write_text(recipe)
    return root


if __name__ == "__main__":
    import sys

    print(storage_tools(*sys.argv[1:2]))
