"""Dumps to stacked local targets with a real Debian kernel: the guest's first kernel
builds the stack with Debian's lvm2/mdadm/btrfs-progs (never run on this machine), the
capture image mkkdumprd built sets it up again after the crash, and makedumpfile reads
the vmcore that a third boot copies out.

Each test is 2-3 QEMU (TCG) boots; times measured here on a quiet machine are in the
marks. The btrfs-subvolume test is in the default run, the others are slow.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import build_image
from mkkdumprd.host import Host
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import (
    UUID,
    add_dm,
    add_whole_vda,
    fake_machine,
    host_only_request,
    lvm_uuid,
    mount_target,
)
from tests.support.storage_tools import storage_tools
from tests.vm.conftest import VIRTIO_DRIVERS, run_mkkdumprd
from tests.vm.harness import disks, vmcore
from tests.vm.harness.storage import crash_with_stack, read_back, the_dump

FIRST_KERNEL_DONE = "kdump: dump saved to"


@pytest.fixture(scope="module")
def tools() -> Path:
    return storage_tools()


def _build(kernel: Kernel, tools: Path, out: Path, *args: str) -> Path:
    """`mkkdumprd build` for another machine, tools from the storage root."""
    argv = ["build", "--sysroot", str(tools), "--arch", "x86_64", "--kver", kernel.kver,
            "--kmoddir", str(kernel.kmoddir), "--no-hostonly", "--timeout", "30",
            *args, "-o", str(out)]
    r = run_mkkdumprd(argv)
    assert r.returncode == 0 and out.exists(), f"{' '.join(argv)}:\n{r.stdout}{r.stderr}"
    return out


def _check(dumps: Path, console: str, tmp_path: Path) -> None:
    d = the_dump(dumps)
    names = {p.name for p in d.iterdir()}
    assert {"vmcore", "vmcore-dmesg.txt"} <= names and "vmcore-incomplete" not in names, \
        f"{sorted(names)}; console:\n{console[-4000:]}"
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(d / "vmcore"), "vmcore")


@pytest.mark.vm
@pytest.mark.slow  # 91 s under TCG here (209 s under other helpers' load)
def test_ext4_on_lvm_lv(kernel: Kernel, tools: Path, tmp_path: Path) -> None:
    # Host-only, against a machine tree describing the guest: /var/crash is an ext4 on LV
    # vg0/crash whose PV is vda. The image activates that LV only (lvm.conf accepts vda
    # only) and waits for /dev/mapper/vg0-crash.
    fs = str(uuid.uuid4())
    machine = fake_machine(tmp_path / "machine")
    add_whole_vda(machine)
    add_dm(machine, "dm-0", "vg0-crash", lvm_uuid("crash"), ["vda"])
    mount_target(machine, "dm-0", "ext4", fs)
    out = tmp_path / "capture.img"
    res = build_image(host_only_request(
        kernel, Host(tools), Host(machine),
        add_drivers=VIRTIO_DRIVERS, timeout=30, output=out))
    assert res.target.stack is not None and res.target.stack.describe() == \
        "ext4 on LV vg0/crash on vda"
    assert res.target.device == "/dev/mapper/vg0-crash" and res.target.path == "/"
    disk = disks.sparse_file(tmp_path / "pv.img", 1024)
    console = crash_with_stack(kernel, tools, out, f"""
lvm pvcreate -y /dev/vda
lvm vgcreate vg0 /dev/vda
lvm lvcreate -y -L 600M -n crash vg0
lvm lvcreate -y -L 100M -n other vg0
/sbin/mke2fs -q -t ext4 -U {fs} /dev/mapper/vg0-crash
lvm vgchange -an vg0
""", [disk], tmp_path)
    assert FIRST_KERNEL_DONE in console, console[-4000:]
    assert "storage: ext4 on LV vg0/crash on vda" in console
    _, dumps = read_back(kernel, tools, "lvm vgchange -ay vg0 && "
                         "mount -t ext4 /dev/mapper/vg0-crash /mnt", "/mnt",
                         [disk], tmp_path)
    _check(dumps, console, tmp_path)


@pytest.mark.vm
@pytest.mark.slow  # 169 s under TCG here (three boots)
def test_xfs_on_thin_lv(kernel: Kernel, tools: Path, tmp_path: Path) -> None:
    fs = str(uuid.uuid4())
    image = _build(kernel, tools, tmp_path / "capture.img", "--add", "lvm",
                   "--target", f"local:UUID={fs}:/crash",
                   "--add-drivers", ",".join([*VIRTIO_DRIVERS, "xfs"]))
    disk = disks.sparse_file(tmp_path / "pv.img", 1024)
    console = crash_with_stack(kernel, tools, image, f"""
lvm pvcreate -y /dev/vda
lvm vgcreate vg1 /dev/vda
lvm lvcreate -y -L 700M -T vg1/pool
lvm lvcreate -y -V 900M -T vg1/pool -n thin
mkfs.xfs -q -m uuid={fs} /dev/mapper/vg1-thin
mount -t xfs /dev/mapper/vg1-thin /mnt
mkdir -p /mnt/crash
umount /mnt
lvm vgchange -an vg1
""", [disk], tmp_path)
    assert FIRST_KERNEL_DONE in console, console[-4000:]
    _, dumps = read_back(kernel, tools, "lvm vgchange -ay vg1 && "
                         "mount -t xfs /dev/mapper/vg1-thin /mnt", "/mnt/crash",
                         [disk], tmp_path)
    _check(dumps, console, tmp_path)


@pytest.mark.vm
@pytest.mark.slow  # 240 s under TCG here: two crash cycles and a read-back boot
def test_ext4_on_md_raid1_healthy_then_member_missing(kernel: Kernel, tools: Path,
                                                      tmp_path: Path) -> None:
    fs = str(uuid.uuid4())
    image = _build(kernel, tools, tmp_path / "capture.img", "--add", "mdraid",
                   "--target", f"local:UUID={fs}:/var/crash",
                   "--add-drivers", ",".join([*VIRTIO_DRIVERS, "ext4"]))
    a = disks.sparse_file(tmp_path / "a.img", 512)
    b = disks.sparse_file(tmp_path / "b.img", 512)
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    console = crash_with_stack(kernel, tools, image, f"""
mdadm --create /dev/md0 --run --assume-clean --level=1 --raid-devices=2 --metadata=1.2 \\
    /dev/vda /dev/vdb
/sbin/mke2fs -q -t ext4 -U {fs} /dev/md0
mount -t ext4 /dev/md0 /mnt
mkdir -p /mnt/var/crash
umount /mnt
mdadm --stop /dev/md0
""", [a, b], healthy)
    assert FIRST_KERNEL_DONE in console, console[-4000:]
    assert "degraded" not in console
    # Second boot: vdb no longer carries the array; vda's metadata still says two members.
    missing = tmp_path / "missing"
    missing.mkdir()
    console2 = crash_with_stack(kernel, tools, image, "mdadm --zero-superblock /dev/vdb",
                                [a, b], missing)
    assert "md array md0 is degraded" in console2, console2[-4000:]
    assert FIRST_KERNEL_DONE in console2, console2[-4000:]
    _, dumps = read_back(kernel, tools, "mdadm --assemble --run /dev/md0 /dev/vda && "
                         "mount -t ext4 /dev/md0 /mnt", "/mnt/var/crash", [a, b], tmp_path)
    found = sorted(p for p in dumps.iterdir() if p.name.startswith("127.0.0.1-"))
    assert len(found) == 2, [p.name for p in dumps.iterdir()]
    for d in found:
        vmcore.assert_sysrq_crash(vmcore.dump_dmesg(d / "vmcore"), f"{d.name}/vmcore")


@pytest.mark.vm  # 189 s here with other helpers' load (three boots)
def test_btrfs_dump_path_inside_subvolume_root(kernel: Kernel, tools: Path,
                                               tmp_path: Path) -> None:
    # Host-only, against a machine whose / is subvolume "root" of the btrfs on vdb1 (the
    # guest's one disk, vda, holds that filesystem: the device is found by UUID).
    machine = fake_machine(tmp_path / "machine")
    (machine / "proc/self/mountinfo").write_text(
        "22 1 0:31 /root / rw,relatime shared:1 - btrfs /dev/vdb1 "
        "rw,space_cache=v2,subvolid=256,subvol=/root\n")
    (machine / "var/crash").mkdir(parents=True)
    out = tmp_path / "capture.img"
    res = build_image(host_only_request(
        kernel, Host(tools), Host(machine),
        add_drivers=VIRTIO_DRIVERS, timeout=30, output=out))
    assert res.target.path == "/var/crash" and res.target.mount_options == "subvolid=256"
    disk = disks.sparse_file(tmp_path / "btrfs.img", 1024)
    console = crash_with_stack(kernel, tools, out, f"""
mkfs.btrfs -q -f -U {UUID} /dev/vda
mount -t btrfs /dev/vda /mnt
btrfs subvolume create /mnt/root
mkdir -p /mnt/root/var/crash
umount /mnt
""", [disk], tmp_path)
    assert FIRST_KERNEL_DONE in console, console[-4000:]
    # The top level of the filesystem: the dump must be inside subvolume root, where the
    # running system sees /var/crash, and nowhere else.
    _, dumps = read_back(kernel, tools, "mount -t btrfs /dev/vda /mnt && "
                         "[ ! -e /mnt/var ]", "/mnt/root/var/crash", [disk], tmp_path)
    _check(dumps, console, tmp_path)
