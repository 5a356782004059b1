"""`mkkdumprd test --vm` on local targets the guest makes itself: an xfs filesystem (the
CLI, as users run it) and ext4 on an LVM logical volume (a host-only image of a machine
tree with that stack, proved through `vmtest.run.prove` with the build request, as
`test --vm` does after its build). The guest's storage tools are Debian's
(tests/support/storage_tools.py, --sysroot): this machine runs neither mkfs.xfs nor lvm.

Each is one crash boot plus a short read-back boot. In the default run: xfs and LVM; a
btrfs subvolume, md RAID1 of partitions and a thin LV are `long`, LUKS2 needs the
CRASH_DM_CRYPT kernel (`custom_kernel`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import build_image
from mkkdumprd.host import Host
from mkkdumprd.vmtest import report
from mkkdumprd.vmtest.run import Proof, prove
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import (
    add_disk,
    add_dm,
    add_md,
    add_whole_vda,
    fake_machine,
    host_only_request,
    lvm_uuid,
    mount_target,
)
from tests.support.storage_tools import storage_tools
from tests.vm.conftest import VIRTIO_DRIVERS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tools() -> Path:
    return storage_tools()


@pytest.mark.vm
def test_xfs_target_is_made_by_the_guest_and_read_back(kernel: Kernel, tools: Path,
                                                       tmp_path: Path) -> None:
    # 73 s under TCG here (crash boot 53 s, read-back boot ~20 s).
    fs_uuid = str(uuid.uuid4())
    argv = [sys.executable, "-m", "mkkdumprd", "test", "--vm", "--json", "--accel", "tcg",
            "--kernel", str(kernel.vmlinuz), "--kver", kernel.kver,
            "--kmoddir", str(kernel.kmoddir), "--no-hostonly", "--sysroot", str(tools),
            "--workdir", str(tmp_path / "work"),
            "--target", f"xfs:UUID={fs_uuid}:/var/crash",
            "--add-drivers", ",".join([*VIRTIO_DRIVERS, "xfs"])]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1800,
                       stdin=subprocess.DEVNULL)
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["verdict"] == "pass", (doc, r.stderr)
    assert f"scratch xfs UUID={fs_uuid} made by the guest" in doc["stand_in"], doc
    assert doc["vmcore_bytes"] > 1 << 20
    assert any("sysrq triggered crash" in line for line in doc["crash_lines"])
    work = tmp_path / "work"
    console = (work / "console.log").read_text(errors="replace")
    assert "MKKDUMPRD-PY: end prepare rc=0" in console
    assert "MKKDUMPRD-READBACK: done" in (work / "readback.log").read_text(errors="replace")


@pytest.mark.vm
def test_lvm_target_is_rebuilt_with_the_hosts_names(kernel: Kernel, tools: Path,
                                                   tmp_path: Path) -> None:
    # 98 s under TCG here (load from other helpers): one crash boot, one read-back boot.
    # The machine the image is for: /var/crash is ext4 (UUID fs) on LV vg0/crash on vda.
    fs = str(uuid.uuid4())
    machine = fake_machine(tmp_path / "machine")
    add_whole_vda(machine)
    add_dm(machine, "dm-0", "vg0-crash", lvm_uuid("crash"), ["vda"])
    mount_target(machine, "dm-0", "ext4", fs)
    found = _prove_host_only(kernel, tools, machine, tmp_path)
    assert found.verdict == "pass", found.render()
    assert found.failed_step is None and found.vmcore_bytes and found.vmcore_bytes > 1 << 20
    assert f"scratch ext4 UUID={fs} on LV vg0/crash on vda" in found.stand_in, found.stand_in
    console = (tmp_path / "work/console.log").read_text(errors="replace")
    # The guest made the stack with the host's names; the image set it up from the disk.
    assert "MKKDUMPRD-PY: end prepare rc=0" in console
    assert "storage: ext4 on LV vg0/crash on vda" in console
    assert report.SAVED.search(console.split("MKKDUMPRD-PY: crashing now")[1])


@pytest.mark.vm
@pytest.mark.long     # 115 s under TCG here: one crash boot, one read-back boot
def test_btrfs_subvolume_target_is_made_at_the_same_id(kernel: Kernel, tools: Path,
                                                       tmp_path: Path) -> None:
    # The machine's / is subvolume "root" (id 257) of the btrfs on vdb1: the image mounts
    # subvolid=257, so the guest makes one filler subvolume (256) and then "root".
    machine = fake_machine(tmp_path / "machine")
    (machine / "proc/self/mountinfo").write_text(
        "22 1 0:31 /root / rw,relatime shared:1 - btrfs /dev/vdb1 "
        "rw,space_cache=v2,subvolid=257,subvol=/root\n")
    (machine / "var/crash").mkdir(parents=True)
    out = tmp_path / "capture.img"
    req = host_only_request(
        kernel, Host(tools), Host(machine),
        add_drivers=(*VIRTIO_DRIVERS, "btrfs"), timeout=60, output=out)
    res = build_image(req)
    assert res.target.mount_options == "subvolid=257"
    found = prove(Proof(kernel=kernel.vmlinuz, image=out, workdir=tmp_path / "work",
                        crashkernel="144M", kmoddir=kernel.kmoddir, request=req,
                        tools=Host(tools), timeout=900))
    assert found.verdict == "pass", found.render()
    assert "subvolume root (id 257)" in found.stand_in, found.stand_in


@pytest.mark.vm
@pytest.mark.custom_kernel   # 35 s with the CRASH_DM_CRYPT kernel of test_crash_luks.py cached
def test_luks_target_with_the_key_handed_over(tmp_path: Path) -> None:
    # A host-only image of a machine whose /var/crash is ext4 on LUKS2 volume "crash" on
    # vda: the guest formats the volume with the host's LUKS UUID, links its volume key
    # into the keyring, the loader hands it over and the capture image opens the volume.
    from tests.support.custom_kernel import custom_kernel

    kernel = custom_kernel("x86_64-crypt")
    assert kernel.kmoddir is not None
    tools = storage_tools("sid")
    luks, fs = str(uuid.uuid4()), str(uuid.uuid4())
    machine = fake_machine(tmp_path / "machine")
    add_whole_vda(machine)
    add_dm(machine, "dm-0", "crash", f"CRYPT-LUKS2-{luks.replace('-', '')}-crash", ["vda"])
    mount_target(machine, "dm-0", "ext4", fs)
    out = tmp_path / "capture.img"
    req = host_only_request(
        kernel, Host(tools), Host(machine), timeout=60, output=out)
    build_image(req)
    found = prove(Proof(kernel=kernel.image, image=out, workdir=tmp_path / "work",
                        crashkernel="144M", kmoddir=kernel.kmoddir, request=req,
                        tools=Host(tools), timeout=900))
    assert found.verdict == "pass", found.render()
    assert "on LUKS2 crash on vda" in found.stand_in, found.stand_in


def _prove_host_only(kernel: Kernel, tools: Path, machine: Path, tmp_path: Path,
                     ) -> report.Report:
    out = tmp_path / "capture.img"
    req = host_only_request(
        kernel, Host(tools), Host(machine),
        add_drivers=VIRTIO_DRIVERS, timeout=60, output=out)
    build_image(req)
    return prove(Proof(kernel=kernel.vmlinuz, image=out, workdir=tmp_path / "work",
                       crashkernel="144M", kmoddir=kernel.kmoddir, request=req,
                       tools=Host(tools), timeout=900))


@pytest.mark.vm
@pytest.mark.long     # ~2 min under TCG here (243 s with the next one): two boots
def test_md_raid1_of_partitions_keeps_the_array_uuid(kernel: Kernel, tools: Path,
                                                     tmp_path: Path) -> None:
    # md0 (raid1 of vdb1 + vdc1, the host's array UUID) holds /var/crash: the scratch
    # disks get an MBR with partition 1, mdadm --create takes the UUID the image's
    # mdadm.conf names.
    fs = str(uuid.uuid4())
    md_uuid = "1a2b3c4d:5e6f7081:92a3b4c5:d6e7f809"
    machine = fake_machine(tmp_path / "machine")
    add_disk(machine, "vdc", 6)
    add_md(machine, "md0", "raid1", ["vdb1", "vdc1"], uuid=md_uuid)
    mount_target(machine, "md0", "ext4", fs)
    found = _prove_host_only(kernel, tools, machine, tmp_path)
    assert found.verdict == "pass", found.render()
    assert "md0 (raid1: vdb1 vdc1)" in found.stand_in, found.stand_in


@pytest.mark.vm
@pytest.mark.long     # ~2 min under TCG here: one crash boot, one read-back boot
def test_thin_lv_is_made_in_a_pool(kernel: Kernel, tools: Path, tmp_path: Path) -> None:
    fs = str(uuid.uuid4())
    machine = fake_machine(tmp_path / "machine")
    add_whole_vda(machine)
    add_dm(machine, "dm-0", "vg1-pool_tdata", lvm_uuid("tdata", "tdata"), ["vda"])
    add_dm(machine, "dm-1", "vg1-pool-tpool", lvm_uuid("pool", "tpool"), ["dm-0"])
    add_dm(machine, "dm-2", "vg1-thin", lvm_uuid("thin"), ["dm-1"])
    mount_target(machine, "dm-2", "ext4", fs)
    found = _prove_host_only(kernel, tools, machine, tmp_path)
    assert found.verdict == "pass", found.render()
    assert "thin LV vg1/thin on vda" in found.stand_in, found.stand_in


@pytest.mark.vm
@pytest.mark.long     # 158 s under TCG here (loaded): one crash boot, one read-back boot
def test_stacked_image_given_alone_is_rediscovered(kernel: Kernel, tools: Path,
                                                   tmp_path: Path) -> None:
    # As --image: no request is passed; prove() recovers it from the image (kdump.conf and
    # manifest, whose `system` root is the machine tree) and the LVM stack is found again.
    fs = str(uuid.uuid4())
    machine = fake_machine(tmp_path / "machine")
    add_whole_vda(machine)
    add_dm(machine, "dm-0", "vg0-crash", lvm_uuid("crash"), ["vda"])
    mount_target(machine, "dm-0", "ext4", fs)
    out = tmp_path / "capture.img"
    build_image(host_only_request(
        kernel, Host(tools), Host(machine),
        add_drivers=VIRTIO_DRIVERS, timeout=60, output=out))
    found = prove(Proof(kernel=kernel.vmlinuz, image=out, workdir=tmp_path / "work",
                        crashkernel="144M", kmoddir=kernel.kmoddir, timeout=900))
    assert found.verdict == "pass", found.render()
    assert f"scratch ext4 UUID={fs} on LV vg0/crash on vda" in found.stand_in, found.stand_in
