"""Host-only discovery of the block stack under a local target, on fake sysfs trees:
LVM (thin too), md RAID, LUKS, multi-device btrfs; unsupported layers are errors naming
them; the capture image's lvm.conf/mdadm.conf name only what the target needs."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.assemble.target import resolve_target
from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.host import Host
from mkkdumprd.storage import capture
from mkkdumprd.storage.crypt_support import check_crash_dm_crypt
from mkkdumprd.storage.discover import storage_modules, with_stack
from mkkdumprd.storage.stack import Kind, UnsupportedLayer, discover, split_lvm_name
from tests.support.fake_machine import (
    add_disk,
    add_dm,
    add_md,
    fake_machine,
    lvm_uuid,
    mount_target,
)

FS = "99999999-8888-4777-8666-555555555555"
MD_UUID = "0a1b2c3d:4e5f6071:8293a4b5:c6d7e8f9"
LUKS_HEX = "c0ffee00" * 4


def _machine(tmp_path: Path) -> Path:
    root = fake_machine(tmp_path / "m")
    add_disk(root, "vdc", 6)
    add_disk(root, "vdd", 7)
    return root


def _resolved(root: Path) -> tuple[object, Host]:
    system = Host(root)
    t, _ = resolve_target(KdumpConfig(path="/var/crash"), system, True)
    return with_stack(t, system, True), system


def test_lv_on_md_raid1(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    add_md(root, "md0", "raid1", ["vdc1", "vdd1"], MD_UUID)
    add_dm(root, "dm-0", "vg0-crash", lvm_uuid("crash"), ["md0"])
    mount_target(root, "dm-0", "ext4", FS)
    t, _ = _resolved(root)
    assert t.stack is not None  # type: ignore[attr-defined]
    stack = t.stack  # type: ignore[attr-defined]
    assert stack.describe() == "ext4 on LV vg0/crash on md0 (raid1: vdc1 vdd1)"
    assert stack.modules() == ["mdraid", "lvm"]
    assert {"md_mod", "raid1", "dm_mod"} <= set(stack.kernel_modules())
    # The image waits for the node its own tools make, not a UUID a member may show too.
    assert t.device == "/dev/mapper/vg0-crash"  # type: ignore[attr-defined]
    conf = capture.mdadm_conf(stack)
    assert f"ARRAY /dev/md0 UUID={MD_UUID}" in conf and "AUTO -all" in conf
    lvm = capture.lvm_conf(stack)
    assert 'global_filter = [ "a|^/dev/md0$|", "r|.*|" ]' in lvm
    assert "udev_rules = 0" in lvm and "backup = 0" in lvm


def test_thin_lv_folds_the_pool_into_the_layer(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    add_dm(root, "dm-0", "vg1-pool_tmeta", lvm_uuid("tmeta"), ["vdc1"])
    add_dm(root, "dm-1", "vg1-pool_tdata", lvm_uuid("tdata"), ["vdc1", "vdd1"])
    add_dm(root, "dm-2", "vg1-pool-tpool", lvm_uuid("pool", "tpool"), ["dm-0", "dm-1"])
    add_dm(root, "dm-3", "vg1-thin--vol", lvm_uuid("thin"), ["dm-2"])
    mount_target(root, "dm-3", "xfs", FS)
    t, _ = _resolved(root)
    stack = t.stack  # type: ignore[attr-defined]
    assert stack.describe() == "xfs on thin LV vg1/thin-vol on vdc1 + vdd1"
    assert "dm_thin_pool" in stack.kernel_modules()
    settings = capture.settings(stack, ("lvm",))
    assert settings.lvm == (capture.LogicalVolume("vg1", "thin-vol", "vg1-thin--vol"),)


def test_degraded_md_without_uuid_names_its_members(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    add_md(root, "md5", "raid1", ["vdc1"])
    mount_target(root, "md5", "ext4", FS)
    t, _ = _resolved(root)
    assert t.device == "/dev/md5"  # type: ignore[attr-defined]
    assert "ARRAY /dev/md5 devices=/dev/vdc1" in capture.mdadm_conf(t.stack)  # type: ignore


def test_luks_on_partition(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    add_dm(root, "dm-0", "luks-x", f"CRYPT-LUKS2-{LUKS_HEX}-luks-x", ["vdc1"])
    mount_target(root, "dm-0", "ext4", FS)
    t, _ = _resolved(root)
    stack = t.stack  # type: ignore[attr-defined]
    assert stack.describe() == "ext4 on LUKS2 luks-x on vdc1"
    (layer,) = [x for x in stack.layers() if x.kind is Kind.CRYPT]
    assert layer.luks_uuid == "c0ffee00-c0ff-ee00-c0ff-ee00c0ffee00"
    assert stack.modules() == ["crypt"]


@pytest.mark.parametrize(("uuid", "name", "words"), [
    ("CRYPT-PLAIN-abc-x", "x", "dm-crypt (not LUKS)"),
    ("", "custom", "no uuid"),
])
def test_unsupported_dm_layers_are_named(tmp_path: Path, uuid: str, name: str,
                                         words: str) -> None:
    root = _machine(tmp_path)
    add_dm(root, "dm-0", name, uuid, ["vdc1"])
    mount_target(root, "dm-0", "ext4", FS)
    with pytest.raises(UnsupportedLayer, match=re.escape(f"{name} ({words})")):
        _resolved(root)


def test_multipath_map_and_its_refused_forms(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    (root / "sys/class/block/vdc/device/wwid").write_text("naa.600140512345\n")
    add_dm(root, "dm-0", "mpatha", "mpath-3600140512345", ["vdc", "vdd"])
    mount_target(root, "dm-0", "ext4", FS)
    t, _ = _resolved(root)
    stack = t.stack  # type: ignore[attr-defined]
    assert stack.describe() == "ext4 on multipath mpatha (WWID 3600140512345: vdc vdd)"
    (layer,) = [x for x in stack.layers() if x.kind is Kind.MPATH]
    assert (layer.wwid, layer.path_wwid) == ("3600140512345", "naa.600140512345")
    assert stack.modules() == ["multipath"]
    assert t.device == "/dev/mapper/mpatha"  # type: ignore[attr-defined]
    conf = capture.multipath_conf(stack)
    assert 'wwid "^3600140512345$"' in conf and 'alias "mpatha"' in conf
    # A kpartx partition of a map, a map over another map: named, refused.
    (root / "sys/devices/virtual/block/dm-0/dm/uuid").write_text("part1-mpath-36001\n")
    with pytest.raises(UnsupportedLayer, match="mpatha, partition 1 of a multipath map"):
        _resolved(root)
    (root / "sys/devices/virtual/block/dm-0/dm/uuid").write_text("mpath-36001\n")
    add_md(root, "md0", "raid1", ["vdc1", "vdd1"])
    (root / "sys/devices/virtual/block/dm-0/slaves/md0").symlink_to("/sys/class/block/md0")
    with pytest.raises(UnsupportedLayer, match=r"paths that are not disks \(md0\)"):
        _resolved(root)
    (root / "sys/devices/virtual/block/dm-0/dm/uuid").write_text('mpath-3"x\n')
    with pytest.raises(UnsupportedLayer, match="unusual WWID"):
        _resolved(root)


def test_loop_device_is_refused(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    (root / "sys/devices/virtual/block/loop0/loop").mkdir(parents=True)
    (root / "sys/class/block/loop0").symlink_to("../../devices/virtual/block/loop0")
    (root / "dev/loop0").write_text("")
    mount_target(root, "loop0", "ext4", FS)
    with pytest.raises(UnsupportedLayer, match="loop0, a loop device"):
        _resolved(root)


def test_external_metadata_raid_is_refused(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    add_md(root, "md126", "raid1", ["vdc", "vdd"], metadata="external:/md127/0")
    mount_target(root, "md126", "ext4", FS)
    with pytest.raises(UnsupportedLayer, match="external metadata"):
        _resolved(root)


def test_multi_device_btrfs_needs_the_btrfs_module(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    for d in ("vdc1", "vdd1"):
        (root / f"sys/fs/btrfs/{FS}/devices").mkdir(parents=True, exist_ok=True)
        (root / f"sys/fs/btrfs/{FS}/devices/{d}").symlink_to(f"/sys/class/block/{d}")
    stack = discover(Host(root), PurePosixPath("/dev/vdc1"), "btrfs", FS)
    assert stack.modules() == ["btrfs"]
    assert stack.describe() == "btrfs on vdc1 (btrfs devices: vdd1)"


def test_plain_partition_has_no_storage_modules(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    mount_target(root, "vdc1", "ext4", FS)
    t, _ = _resolved(root)
    assert t.stack.modules() == []  # type: ignore[attr-defined]
    assert t.device == f"UUID={FS}"  # type: ignore[attr-defined]
    assert storage_modules(t, ()) == []  # type: ignore[arg-type]


def test_lvm_names_with_dashes() -> None:
    assert split_lvm_name("my--vg-my--lv") == ("my-vg", "my-lv")
    with pytest.raises(UnsupportedLayer):
        split_lvm_name("a-b-c")


def test_luks_refused_without_crash_dm_crypt(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    (root / "lib/modules/6.1.0-x").mkdir(parents=True)
    (root / "lib/modules/6.1.0-x/config").write_text("CONFIG_DM_CRYPT=m\n"
                                                      "# CONFIG_CRASH_DM_CRYPT is not set\n")
    with pytest.raises(Exception, match=r"kernel 6\.1\.0-x is built without "
                                        r"CONFIG_CRASH_DM_CRYPT .*dump to another target"):
        check_crash_dm_crypt(Host(root), "6.1.0-x")
    (root / "boot").mkdir()
    (root / "boot/config-7.0").write_text("CONFIG_CRASH_DM_CRYPT=y\n")
    check_crash_dm_crypt(Host(root), "7.0")
    # --kmoddir for another machine's kernel: the config beside its modules counts first.
    kmoddir = tmp_path / "custom/lib/modules/7.2.0"
    kmoddir.mkdir(parents=True)
    (kmoddir / "config").write_text("CONFIG_CRASH_DM_CRYPT=y\n")
    check_crash_dm_crypt(Host(root), "6.1.0-x", kmoddir)
    (kmoddir / "config").write_text("CONFIG_DM_CRYPT=y\n")
    with pytest.raises(Exception, match="built without CONFIG_CRASH_DM_CRYPT"):
        check_crash_dm_crypt(Host(root), "7.0", kmoddir)
