"""failure_action dump_to_rootfs with the root filesystem on LVM, with a real Debian kernel.

The image is built host-only for a machine whose / is ext4 on LV vg0/root (PV vda) and
whose dump target is another disk's filesystem (vdb1). The guest has only vda: its first
kernel makes the PV, the VG and the LV with Debian's lvm2 (never run on this machine) and
leaves the LV inactive. After the crash the target never appears, and failure_action
dump_to_rootfs must activate vg0/root itself (the storage module, as for a target) and
dump there. The host reads the vmcore from the disk file with debugfs: the LV is the first
one of the PV, so its filesystem starts at the PV's first extent (lvm2's default 1 MiB).

What this does not prove: a guest actually running from that root (the first kernel runs
from its initramfs); the image only knows the root from the machine's mountinfo, which is
what a real root on LVM would show.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import BuildRequest, build_image
from mkkdumprd.config.model import Action, KdumpConfig
from mkkdumprd.host import Host
from mkkdumprd.vmtest.scratch import ext_dump, ext_ls
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import add_dm, fake_machine, lvm_uuid
from tests.support.storage_tools import storage_tools
from tests.vm.conftest import VIRTIO_DRIVERS
from tests.vm.harness import disks, vmcore
from tests.vm.harness.storage import crash_with_stack

PE_START = 1 << 20     # lvm2's default data alignment: the first extent of the PV


@pytest.mark.vm
@pytest.mark.long  # 120 s here under load: one crash cycle, a 15 s wait for the lost target
def test_dump_to_rootfs_activates_the_roots_lv(kernel: Kernel, tmp_path: Path) -> None:
    tools = storage_tools()
    fs = str(uuid.uuid4())
    machine = fake_machine(tmp_path / "machine")   # the target: /srv/dump on vdb1
    pci = "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda"
    (machine / "sys/class/block/vda").symlink_to(pci)
    (machine / "sys/devices/pci0000:00/0000:00:05.0/virtio2/block/vda/device").symlink_to(
        "../..")
    (machine / "dev/vda").write_text("")
    add_dm(machine, "dm-0", "vg0-root", lvm_uuid("root"), ["vda"])
    (machine / "dev/disk/by-uuid" / fs).symlink_to("../../dm-0")
    (machine / "proc/self/mountinfo").write_text(
        "22 1 253:0 / / rw - ext4 /dev/mapper/vg0-root rw\n"
        "36 22 254:17 / /srv/dump rw,relatime shared:1 - ext4 /dev/vdb1 rw\n")
    out = tmp_path / "capture.img"
    res = build_image(BuildRequest(
        config=KdumpConfig(path="/srv/dump", failure_action=Action.DUMP_TO_ROOTFS),
        kver=kernel.kver, kmoddir=kernel.kmoddir, sysroot=Host(tools),
        machine=Host(machine), arch="x86_64", hostonly=True,
        add_drivers=(*VIRTIO_DRIVERS, "ext4"), timeout=15, output=out))
    assert {"storage", "lvm", "dump-to-rootfs"} <= set(res.modules)
    disk = disks.sparse_file(tmp_path / "pv.img", 1024)
    console = crash_with_stack(kernel, tools, out, f"""
lvm pvcreate -y /dev/vda
lvm vgcreate vg0 /dev/vda
lvm lvcreate -y -L 600M -n root vg0
lvm lvcreate -y -L 100M -n other vg0
/sbin/mke2fs -q -t ext4 -U {fs} /dev/mapper/vg0-root
lvm vgchange -an vg0
""", [disk], tmp_path)
    assert "did not appear within 15 s" in console, console[-4000:]
    assert "failure_action dump_to_rootfs: saving to /dev/mapper/vg0-root" in console, \
        console[-4000:]
    assert "on the root filesystem /dev/mapper/vg0-root" in console, console[-4000:]
    lv = Path(f"{disk}?offset={PE_START}")
    found = [e.name for e in ext_ls(lv, "/srv/dump") if e.name.startswith("127.0.0.1-")]
    assert len(found) == 1, found
    names = {e.name for e in ext_ls(lv, f"/srv/dump/{found[0]}")}
    assert {"vmcore", "vmcore-dmesg.txt"} <= names and "vmcore-incomplete" not in names
    core = ext_dump(lv, f"/srv/dump/{found[0]}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(core), "vmcore")
