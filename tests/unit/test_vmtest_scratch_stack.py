"""The plan of a guest-made scratch stand-in: which layout (scratch_layout.py), the shell
that makes and reads it (stack_script.py), the partitioned disks, where the disks go
(local_target.py), the read-back tar, and the first stage's preparation step.

Nothing here runs lvm/mdadm/cryptsetup/mkfs or mounts: the scripts are only parsed (sh -n)
and shellchecked; the disks are regular files read back with Python and `sfdisk --dump`
(read only, on a file).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.storage.stack import Kind, Layer, Stack, discover
from mkkdumprd.vmtest import first_stage, local_target, readback, scratch, stack_script
from mkkdumprd.vmtest.qemu import Drive
from mkkdumprd.vmtest.scratch_layout import Layout, Place, layout, place
from tests.support.fake_machine import (
    add_disk,
    add_dm,
    add_iscsi_disk,
    add_md,
    fake_machine,
    lvm_uuid,
)
from tests.support.shellcheck import assert_clean

TOOLS = {n: f"/sbin/{n}" for n in ("mke2fs", "mkfs.xfs", "mkfs.btrfs", "btrfs", "lvm",
                                    "mdadm", "cryptsetup")}
FS = "0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e"
LUKS = "4f6b1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e"
MD_UUID = "1a2b3c4d:5e6f7081:92a3b4c5:d6e7f809"


def _disk(name: str) -> Layer:
    return Layer(Kind.DISK, name)


def _lv(vg: str, lv: str, below: tuple[Layer, ...], thin: bool = False) -> Layer:
    return Layer(Kind.LVM, "dm-1", below, ("dm_mod",), vg=vg, lv=lv, thin=thin,
                 dm_name=f"{vg.replace('-', '--')}-{lv.replace('-', '--')}")


def _md(name: str, below: tuple[Layer, ...]) -> Layer:
    return Layer(Kind.MD, name, below, ("md_mod", "raid1"), md_level="raid1", md_uuid=MD_UUID)


def _luks(below: Layer) -> Layer:
    return Layer(Kind.CRYPT, "dm-2", (below,), ("dm_crypt",), dm_name="crash", luks="LUKS2",
                 luks_uuid=LUKS)


def _check_sh(tmp_path: Path, name: str, text: str, exclude: tuple[str, ...] = ()) -> None:
    f = tmp_path / name
    f.write_text(text)
    subprocess.run(["sh", "-n", str(f)], check=True)
    assert_clean([f], exclude=exclude)


def test_place_names_the_bus_index_and_partition() -> None:
    assert place("vdb") == Place("vdb", "virtio", 1, 0)
    assert place("sda2") == Place("sda2", "sd", 0, 2) and place("sda2").disk == "sda"
    assert place("nvme1n1p3") == Place("nvme1n1p3", "nvme", 1, 3)
    assert place("nvme1n1p3").disk == "nvme1n1"
    with pytest.raises(UsageError, match="partitions 1-4"):
        place("vda5")
    with pytest.raises(UsageError, match="vdX, sdX or nvmeNn1"):
        place("xvda")


def test_layout_takes_uuid_label_and_the_btrfs_subvolume_id() -> None:
    t = {"kind": "local", "device": f"UUID={FS}", "fstype": "btrfs", "path": "/var/crash",
         "mount_options": "subvolid=257"}
    lay = layout(t, None, "ignored", "/root")
    assert (lay.fs_uuid, lay.subvolid, lay.subvolume, lay.label) == (FS, 257, "root", None)
    assert not lay.on_host and lay.tools() == ("mkfs.btrfs", "btrfs")
    by_label = layout({"kind": "local", "device": "LABEL=crash", "fstype": "ext4",
                       "path": "/"}, None, FS)
    assert by_label.label == "crash" and by_label.fs_uuid == FS and by_label.on_host
    with pytest.raises(UsageError, match=r"ids 256\.\.320 only"):
        layout({**t, "mount_options": "subvolid=5000"}, None, FS)
    with pytest.raises(UsageError, match="not vfat"):
        layout({**t, "fstype": "vfat"}, None, FS)


def test_layout_from_a_discovered_stack_keeps_the_hosts_names(tmp_path: Path) -> None:
    # md0 (raid1 of vdc1 + vdd1) under LV vg0/crash: the disks are placed at the host's
    # names, the modules and tools follow the layers.
    m = fake_machine(tmp_path / "m")
    add_disk(m, "vdc", 6)
    add_disk(m, "vdd", 7)
    add_md(m, "md0", "raid1", ["vdc1", "vdd1"], uuid=MD_UUID)
    add_dm(m, "dm-0", "vg0-crash", lvm_uuid("crash"), ["md0"])
    from pathlib import PurePosixPath
    stack = discover(Host(m), PurePosixPath("/dev/dm-0"), "xfs")
    lay = layout({"kind": "local", "device": "/dev/mapper/vg0-crash", "fstype": "xfs",
                  "path": "/"}, stack, FS)
    assert [p.name for p in lay.places()] == ["vdc1", "vdd1"]
    assert lay.fs_devices() == ("/dev/mapper/vg0-crash",)
    assert lay.tools() == ("mkfs.xfs", "mdadm", "lvm")
    assert set(lay.kernel_modules()) >= {"md_mod", "raid1", "dm_mod", "xfs"}
    script = stack_script.prepare(lay, TOOLS)
    md = script.index(f"/sbin/mdadm --create /dev/md0 --run --assume-clean --metadata=1.2 "
                      f"--level=raid1 --raid-devices=2 --uuid={MD_UUID} /dev/vdc1 /dev/vdd1")
    pv = script.index("/sbin/lvm pvcreate -y -ff /dev/md0")
    lv = script.index("/sbin/lvm lvcreate -y -l 100%FREE -n crash vg0")
    mkfs = script.index(f"/sbin/mkfs.xfs -f -q -m uuid={FS} /dev/mapper/vg0-crash")
    down = script.index("/sbin/lvm vgchange -an vg0")
    stop = script.index("/sbin/mdadm --stop /dev/md0")
    assert md < pv < lv < mkfs < down < stop
    _check_sh(tmp_path, "prepare.sh", script)


def test_thin_lv_luks_and_btrfs_subvolume_scripts(tmp_path: Path) -> None:
    thin = Stack("ext4", _lv("vg1", "thin", (_disk("sda2"),), thin=True))
    lay = layout({"kind": "local", "device": "/dev/mapper/vg1-thin", "fstype": "ext4",
                  "path": "/var/crash"}, thin, FS)
    script = stack_script.prepare(lay, TOOLS)
    assert "lvcreate -y -l 90%FREE -T vg1/mkkdumprd_pool" in script
    assert "lvcreate -y -V 900M -T vg1/mkkdumprd_pool -n thin" in script
    assert f"/sbin/mke2fs -q -F -t ext4 -U {FS} /dev/mapper/vg1-thin" in script
    _check_sh(tmp_path, "thin.sh", script)

    luks = Stack("ext4", _luks(_disk("vdb")))
    lay = layout({"kind": "local", "device": "/dev/mapper/crash", "fstype": "ext4",
                  "path": "/"}, luks, FS)
    script = stack_script.prepare(lay, TOOLS)
    assert f"--uuid {LUKS} --key-file {stack_script.PASSFILE} /dev/vdb" in script
    # the volume key in the keyring under the loader's description; the volume stays open
    assert f"--link-vk-to-keyring @u::%logon:kdump-cryptsetup:vk-{LUKS} /dev/vdb crash" \
        in script
    assert "cryptsetup close" not in script
    rb = stack_script.readback(lay, "/dev/vdc", TOOLS)
    assert "open --readonly --key-file" in rb and "-o ro " in rb
    _check_sh(tmp_path, "luks.sh", script)
    _check_sh(tmp_path, "luks-readback.sh", rb)

    sub = layout({"kind": "local", "device": f"UUID={FS}", "fstype": "btrfs",
                  "path": "/crash", "mount_options": "subvolid=258"}, None, FS, "/@/root")
    sub = Layout(**{**sub.__dict__, "plain": place("vda")})
    script = stack_script.prepare(sub, TOOLS)
    fillers = [line for line in script.splitlines() if "mkkdumprd-filler-" in line]
    assert len(fillers) == 2       # ids 256 and 257, then the target's 258
    assert script.index("subvolume create /mnt/scratch/@/root") > script.index(fillers[-1])
    assert "mkdir -p /mnt/scratch/@/root/crash" in script
    rb = stack_script.readback(sub, "/dev/vdb", TOOLS)
    assert "-o ro,subvolid=258 /dev/vda" in rb
    assert "tar -C /mnt/scratch/crash -cf /dev/vdb ." in rb
    _check_sh(tmp_path, "btrfs.sh", script)


def test_hostile_names_stay_words(tmp_path: Path) -> None:
    # Names reach the scripts from the machine's sysfs: every one goes through shell_word.
    evil = "$(touch /tmp/x)`y` z;"
    lay = Layout("ext4", FS, evil, f"/{evil}", stack=Stack("ext4", _lv("vg", "lv", (
        _disk("vdb"),))), plain=None)
    script = stack_script.prepare(lay, TOOLS)
    assert "'$(touch /tmp/x)`y` z;'" in script
    # SC2016: the `$(...)` is meant literally, single-quoted on purpose.
    _check_sh(tmp_path, "evil.sh", script, exclude=("SC2016",))


def test_partitioned_disk_has_the_partition_where_the_host_has_it(tmp_path: Path) -> None:
    disk = scratch.make_partitioned(tmp_path / "d.img", 3, 64)
    data = disk.read_bytes()[:512]
    assert data[510:] == b"\x55\xaa"
    starts = [int.from_bytes(data[446 + 16 * i + 8:446 + 16 * i + 12], "little")
              for i in range(4)]
    assert starts == [2048, 4096, 6144, 0]
    if shutil.which("sfdisk"):
        out = subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True,
                             text=True, check=True).stdout
        assert f"{disk}3 : start=        6144, size=      124928, type=83" in out


def test_disks_are_placed_at_their_index_with_fillers(tmp_path: Path) -> None:
    lay = layout({"kind": "local", "device": "/dev/md0", "fstype": "ext4", "path": "/"},
                 Stack("ext4", _md("md0", (_disk("vdb"), _disk("vdd2")))), FS)
    disks = local_target._disks(lay, tmp_path)
    drives = local_target._placed(disks, frozenset({"virtio_pci", "virtio_blk"}), None,
                                  tmp_path)
    assert [d.path.name for d in drives] == ["filler-virtio0.img", "scratch-vdb.img",
                                             "filler-virtio2.img", "scratch-vdd2.img"]
    assert readback.tar_position(drives) == ("virtio", "/dev/vde")
    assert readback.tar_position((Drive(Path("x"), bus="scsi"),)) == ("scsi", "/dev/sdb")


def test_stacked_image_without_its_build_request_is_refused(tmp_path: Path) -> None:
    t = {"kind": "local", "device": "/dev/mapper/vg0-crash", "fstype": "ext4", "path": "/",
         "stack": "ext4 on LV vg0/crash on vda"}
    with pytest.raises(UsageError, match="instead of --image"):
        local_target.local_stand_in(t, frozenset(), tmp_path, None, None, None)
    # a guest-made filesystem needs the guest's kernel
    with pytest.raises(UsageError, match="needs the kernel it boots"):
        local_target.local_stand_in({"kind": "local", "device": f"UUID={FS}",
                                     "fstype": "xfs", "path": "/"}, frozenset(), tmp_path,
                                    None, None, None)


@pytest.mark.parametrize("filters", [True, False], ids=["data-filter", "no-filters"])
def test_read_back_tar_is_unpacked_without_links_or_escapes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool) -> None:
    """With tarfile's data filter, and without one (Python before 3.11.4, as Debian 12's
    3.11.2): the same members, modes and owners."""
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no extraction filters")
    tar = tmp_path / "disk.tar"
    abs_target = tmp_path / "abs-escape"
    with tarfile.open(tar, "w") as t:
        for name, data, mode in (("./127.0.0.1-2026-12-03-20:00:00/vmcore", b"core", 0o4777),
                                 ("../escape", b"x", 0o644),
                                 (str(abs_target), b"x", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.uname = len(data), mode, 4242, "nobody"
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
        node = tarfile.TarInfo("./null")
        node.type, node.devmajor, node.devminor = tarfile.CHRTYPE, 1, 3
        t.addfile(node)
    with open(tar, "ab") as f:        # the rest of the raw disk: zeros
        f.write(bytes(1 << 16))
    out = readback.unpack(tar, tmp_path / "out")
    core = out / "127.0.0.1-2026-12-03-20:00:00/vmcore"
    assert core.read_bytes() == b"core"
    st = core.stat()
    assert st.st_mode & 0o7777 == 0o755 and st.st_uid == os.getuid()
    assert not (tmp_path / "escape").exists() and not abs_target.exists()
    assert not (out / "link").exists() and not (out / "null").exists()
    assert sorted(p.name for p in out.iterdir()) == ["127.0.0.1-2026-12-03-20:00:00"]


def test_first_stage_prepares_before_the_load(tmp_path: Path) -> None:
    script = first_stage.crash_script(None, ["console=ttyS0"], prepare=True)
    prep = script.index(f"step prepare sh {first_stage.PREPARE}")
    failed = script.index(first_stage.PREPARE_FAILED_MARKER)
    load = script.index("step load ")
    assert prep < failed < load
    assert "prepare" not in first_stage.crash_script(None, ["console=ttyS0"])
    _check_sh(tmp_path, "init", script)
    # the step's status is the command's: a failing preparation powers off
    f = tmp_path / "t.sh"
    f.write_text(script.split("mount -t proc")[0] + script[script.index("step() {"):prep]
                 + "step prepare false || echo FAILED-MARKER\n")
    out = subprocess.run(["sh", str(f)], capture_output=True, text=True).stdout
    assert "end prepare rc=1" in out and "FAILED-MARKER" in out


def test_layout_for_unknown_fs_uuid_is_random(tmp_path: Path) -> None:
    a = layout({"kind": "local", "device": "/dev/vdb", "fstype": "xfs", "path": "/"}, None,
               str(uuid.uuid4()))
    assert a.fs_uuid and a.label is None


def test_multi_device_btrfs_is_made_on_every_device(tmp_path: Path) -> None:
    lay = layout({"kind": "local", "device": f"UUID={FS}", "fstype": "btrfs", "path": "/"},
                 Stack("btrfs", _disk("vdb"), (_disk("vdc"),)), FS)
    assert lay.tools() == ("mkfs.btrfs", "btrfs")
    assert [p.name for p in lay.places()] == ["vdb", "vdc"]
    script = stack_script.prepare(lay, TOOLS)
    assert f"/sbin/mkfs.btrfs -f -q -U {FS} /dev/vdb /dev/vdc" in script
    assert script.index("/sbin/btrfs device scan") < script.index("mount -t btrfs /dev/vdb")
    assert "/sbin/btrfs device scan" in stack_script.readback(lay, "/dev/vdd", TOOLS)
    _check_sh(tmp_path, "multi.sh", script)


def test_multipath_and_iscsi_layers_are_refused_by_name(tmp_path: Path) -> None:
    # No stand-in exists for them: a plain scratch disk would prove another image.
    from pathlib import PurePosixPath
    m = fake_machine(tmp_path / "mp")
    add_disk(m, "sdb", 6, parts=0)
    add_disk(m, "sdc", 7, parts=0)
    add_dm(m, "dm-0", "mpatha", "mpath-35000c50015ea71ac", ["sdb", "sdc"])
    target = {"kind": "local", "device": "/dev/mapper/mpatha", "fstype": "ext4", "path": "/"}
    stack = discover(Host(m), PurePosixPath("/dev/dm-0"), "ext4")
    with pytest.raises(UsageError, match=r"multipath map mpatha.*test_crash_multipath"):
        layout(target, stack, FS)
    i = fake_machine(tmp_path / "is")
    add_iscsi_disk(i, "sda", partitions=1)
    stack = discover(Host(i), PurePosixPath("/dev/sda1"), "ext4")
    with pytest.raises(UsageError, match=r"iSCSI LUN sda1 .*10\.0\.2\.100:3260.*"
                                         "test_crash_iscsi"):
        layout({**target, "device": "/dev/sda1"}, stack, FS)


def test_newest_dump_directory_gives_the_vmcore(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for name, files in (("host-2026-01-01-00:00:00", ["vmcore"]),
                        ("host-2026-12-03-21:00:00", ["vmcore", "kexec-dmesg.log"]),
                        ("not-a-dump", ["vmcore"])):
        (tree / name).mkdir(parents=True)
        for f in files:
            (tree / name / f).write_text(name)
    out = readback.take_newest_vmcore(tree, "/var/crash on the scratch xfs", tmp_path / "v")
    assert out.read_text() == "host-2026-12-03-21:00:00"
    (tree / "host-2026-12-03-22:00:00").mkdir()
    (tree / "host-2026-12-03-22:00:00" / "vmcore-incomplete").write_text("")
    with pytest.raises(OperationError, match=r"22:00:00 under /var/crash on the "
                       r"scratch xfs holds \['vmcore-incomplete'\], no complete vmcore"):
        readback.take_newest_vmcore(tree, "/var/crash on the scratch xfs", tmp_path / "w")
    with pytest.raises(OperationError, match="no dump directory under x"):
        readback.take_newest_vmcore(tree / "not-a-dump", "x", tmp_path / "y")
