"""Capture images for stacked targets: host-only on a fake machine (LV on md RAID1), for
another machine with --add, and the LUKS refusal on a kernel without CRASH_DM_CRYPT.
The layer tools come from a sysroot where they are stand-ins (this machine has no lvm2 or
mdadm; the VM tests run the real ones)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import assemble
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Kind
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import (
    add_disk,
    add_dm,
    add_md,
    fake_machine,
    host_only_request,
    lvm_uuid,
    mount_target,
)
from tests.support.shellcheck import assert_clean
from tests.support.sysroot import make_sysroot

FS = "99999999-8888-4777-8666-555555555555"
MD_UUID = "0a1b2c3d:4e5f6071:8293a4b5:c6d7e8f9"


@pytest.fixture(scope="module")
def sysroot(tmp_path_factory: pytest.TempPathFactory) -> Host:
    bins = [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p]
    root = make_sysroot(tmp_path_factory.mktemp("sysroot") / "root", bins)
    for tool in ("lvm", "mdadm", "cryptsetup", "btrfs", "multipath",
                 "lib/multipath/libchecktur.so", "lib/multipath/libprioconst.so"):
        dest = root / ("usr/sbin" if "/" not in tool else "") / tool
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy("/bin/true", dest)
    return Host(root)


def _machine(tmp_path: Path) -> Host:
    root = fake_machine(tmp_path / "m")
    add_disk(root, "vdc", 6)
    add_disk(root, "vdd", 7)
    add_md(root, "md0", "raid1", ["vdc1", "vdd1"], MD_UUID)
    add_dm(root, "dm-0", "vg0-crash", lvm_uuid("crash"), ["md0"])
    mount_target(root, "dm-0", "ext4", FS)
    return Host(root)


def _render(res_spec: object, tmp_path: Path, paths: list[str]) -> list[Path]:
    out = []
    for p in paths:
        # /lib may be a symlink to usr/lib in the sysroot: the image follows it.
        e = res_spec.get(p) or res_spec.get(f"/usr{p}")  # type: ignore[attr-defined]
        assert e is not None and e.data is not None, p
        f = tmp_path / "render" / p.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(e.data)
        out.append(f)
    return out


def test_hostonly_lv_on_md(kernel: Kernel, sysroot: Host, tmp_path: Path) -> None:
    res = assemble(host_only_request(kernel, sysroot, _machine(tmp_path)))
    assert res.target.stack is not None
    assert res.target.stack.describe() == "ext4 on LV vg0/crash on md0 (raid1: vdc1 vdd1)"
    assert res.target.device == "/dev/mapper/vg0-crash"
    assert {"storage", "lvm", "mdraid"} <= set(res.modules) and "crypt" not in res.modules
    assert {"dm_mod", "md_mod", "raid1"} <= set(res.kernel_modules)
    lvm = res.spec.get("/usr/sbin/lvm")
    assert lvm is not None and lvm.kind is Kind.FILE and "module lvm" in lvm.reason
    mdadm = res.spec.get("/usr/sbin/mdadm")
    assert mdadm is not None and "module mdraid" in mdadm.reason
    lvm_conf = res.spec.get("/etc/lvm/lvm.conf")
    assert lvm_conf is not None and lvm_conf.data is not None
    assert b'"a|^/dev/md0$|", "r|.*|"' in lvm_conf.data
    md_conf = res.spec.get("/etc/mdadm/mdadm.conf")
    assert md_conf is not None and md_conf.data is not None
    assert f"ARRAY /dev/md0 UUID={MD_UUID}".encode() in md_conf.data
    storage, target = _render(res.spec, tmp_path, ["/lib/kdump/storage.sh",
                                                   "/lib/kdump/target.sh"])
    text = storage.read_text()
    assert "kdump_lvm_activate vg0 crash vg0-crash" in text
    assert "storage: $KDUMP_STORAGE_DESC" in text
    assert "kdump_storage_up" in target.read_text()
    for f in (storage, target):
        subprocess.run(["sh", "-n", str(f)], check=True)
    assert_clean([storage, target], exclude=["SC2034"])


def test_add_for_another_machine_activates_everything(kernel: Kernel, sysroot: Host,
                                                      tmp_path: Path) -> None:
    cfg = KdumpConfig(target=Target(TargetKind.LOCAL, device=f"UUID={FS}", fstype="ext4"),
                      path="/var/crash")
    res = assemble(host_only_request(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
                        add_modules=("lvm", "mdraid"), add_drivers=("virtio_blk",)))
    assert res.target.stack is None and res.target.device == f"UUID={FS}"
    assert {"dm_thin_pool", "raid1", "raid10"} <= set(res.kernel_modules)
    (storage,) = _render(res.spec, tmp_path, ["/lib/kdump/storage.sh"])
    assert "lvm vgchange -ay" in storage.read_text()
    md_conf = res.spec.get("/etc/mdadm/mdadm.conf")
    assert md_conf is not None and md_conf.data is not None and b"AUTO +all" in md_conf.data
    assert_clean([storage], exclude=["SC2034"])


def test_add_unknown_module_and_wrong_target(kernel: Kernel, sysroot: Host,
                                             tmp_path: Path) -> None:
    cfg = KdumpConfig(target=Target(TargetKind.LOCAL, device=f"UUID={FS}"), path="/x")
    with pytest.raises(UsageError, match="unknown module zfs"):
        assemble(host_only_request(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
                      add_modules=("zfs",)))
    nfs = KdumpConfig(target=Target(TargetKind.NFS, server="10.0.0.1:/e"), path="/x")
    with pytest.raises(UsageError, match="storage modules set up a local dump target"):
        assemble(host_only_request(kernel, sysroot, Host(tmp_path), config=nfs, hostonly=False,
                      add_modules=("lvm",)))


def test_luks_target_refused_on_a_kernel_without_crash_dm_crypt(
        kernel: Kernel, sysroot: Host, tmp_path: Path) -> None:
    # The Debian 6.1 test kernel has no CONFIG_CRASH_DM_CRYPT (6.16+).
    cfg = KdumpConfig(target=Target(TargetKind.LOCAL, device=f"UUID={FS}", fstype="ext4"),
                      path="/var/crash")
    with pytest.raises(UsageError, match=r"LUKS volume.*CONFIG_CRASH_DM_CRYPT"):
        assemble(host_only_request(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
                      add_modules=("crypt",), add_drivers=("virtio_blk",)))


def test_luks_with_crash_dm_crypt(kernel: Kernel, sysroot: Host, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(sysroot.root, root, symlinks=True)
    conf = root / f"boot/config-{kernel.kver}"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("CONFIG_CRASH_DM_CRYPT=y\n")
    machine = fake_machine(tmp_path / "m")
    add_disk(machine, "vdc", 6)
    add_dm(machine, "dm-0", "luks-c0ffee00", f"CRYPT-LUKS2-{'c0ffee00' * 4}-luks-c0ffee00",
           ["vdc1"])
    mount_target(machine, "dm-0", "ext4", FS)
    res = assemble(host_only_request(kernel, Host(root), Host(machine)))
    assert res.target.device == "/dev/mapper/luks-c0ffee00"
    assert {"dm_crypt", "configfs"} <= set(res.kernel_modules)
    (storage,) = _render(res.spec, tmp_path, ["/lib/kdump/storage.sh"])
    text = storage.read_text()
    assert "kdump_crypt_open c0ffee00-c0ff-ee00-c0ff-ee00c0ffee00 luks-c0ffee00 vdc1" in text
    assert '--volume-key-keyring "%user:kdump-cryptsetup:vk-$1"' in text
    assert_clean([storage], exclude=["SC2034"])


def test_crashkernel_estimate_has_a_crypt_term() -> None:
    from dataclasses import replace

    from mkkdumprd.arch import load_arch
    from mkkdumprd.crashkernel import recommend as rec

    base = rec.EstimateInputs(arch=load_arch("x86_64"), ram=4 << 30, kernel_runtime=40 << 20,
                              kernel_source="k", image_compressed=10 << 20,
                              image_unpacked=30 << 20, image_entries=300, image_source="i",
                              modules=5 << 20, module_count=20, cpus=1)
    plain, crypt = rec.estimate(base), rec.estimate(replace(base, crypt=True))
    assert next(t for t in crypt.terms if t.name == "crypt").size == rec.CRYPT_TERM
    assert crypt.total - plain.total >= rec.CRYPT_TERM


def test_config_check_prints_the_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mkkdumprd.cli import main

    machine = _machine(tmp_path)
    monkeypatch.setattr(Host, "this_machine", classmethod(lambda cls: machine))
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /var/crash\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert r.exit_code == 0, r.output
    assert "stack: ext4 on LV vg0/crash on md0 (raid1: vdc1 vdd1)\n" in r.output
    # A layer the capture image cannot set up is an error of the check.
    (machine.root / "sys/devices/virtual/block/dm-0/dm/uuid").write_text(
        "part1-mpath-36001\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert r.exit_code == 2 and "vg0-crash, partition 1 of a multipath map" in r.output, \
        r.output


WWID = "35000c50015ea71ac"


def _mpath_machine(tmp_path: Path, mounted: bool = True) -> Host:
    """/var/crash: ext4 on multipath map mpatha over two paths, vdc and vdd."""
    root = fake_machine(tmp_path / "m")
    add_disk(root, "vdc", 6)
    add_disk(root, "vdd", 7)
    for d in ("vdc", "vdd"):
        (root / f"sys/class/block/{d}/device/wwid").write_text("naa.5000c50015ea71ac\n")
    add_dm(root, "dm-0", "mpatha", f"mpath-{WWID}", ["vdc", "vdd"])
    if mounted:
        mount_target(root, "dm-0", "ext4", FS)
    return Host(root)


def test_hostonly_multipath(kernel: Kernel, sysroot: Host, tmp_path: Path) -> None:
    res = assemble(host_only_request(kernel, sysroot, _mpath_machine(tmp_path)))
    assert res.target.stack is not None
    assert res.target.stack.describe() == f"ext4 on multipath mpatha (WWID {WWID}: vdc vdd)"
    assert res.target.device == "/dev/mapper/mpatha"
    assert {"storage", "multipath"} <= set(res.modules) and "lvm" not in res.modules
    assert {"dm_multipath", "dm_service_time", "scsi_dh_alua"} <= set(res.kernel_modules)
    mp = res.spec.get("/usr/sbin/multipath")
    assert mp is not None and "module multipath" in mp.reason
    plugin = res.spec.get("/lib/multipath/libchecktur.so") or \
        res.spec.get("/usr/lib/multipath/libchecktur.so")
    assert plugin is not None and "plugins" in plugin.reason
    conf = res.spec.get("/etc/multipath.conf")
    assert conf is not None and conf.data is not None
    text = conf.data.decode()
    assert "find_multipaths off" in text and 'wwid ".*"' in text
    assert f'wwid "^{WWID}$"' in text and 'alias "mpatha"' in text
    assert 'path_selector "service-time 0"' in text and "no_path_retry fail" in text
    (storage,) = _render(res.spec, tmp_path, ["/lib/kdump/storage.sh"])
    script = storage.read_text()
    assert f"kdump_mpath_node {WWID} mpatha" in script
    assert "_pw=naa.5000c50015ea71ac" in script and "_p='vdc vdd'" in script
    subprocess.run(["sh", "-n", str(storage)], check=True)
    assert_clean([storage], exclude=["SC2034"])


def test_lvm_on_multipath_accepts_the_map_only(kernel: Kernel, sysroot: Host,
                                               tmp_path: Path) -> None:
    machine = _mpath_machine(tmp_path, mounted=False)
    add_dm(machine.root, "dm-1", "vg0-crash", lvm_uuid("crash"), ["dm-0"])
    mount_target(machine.root, "dm-1", "ext4", FS)
    res = assemble(host_only_request(kernel, sysroot, machine))
    assert res.target.stack is not None
    assert res.target.stack.modules() == ["multipath", "lvm"]
    lvm_conf = res.spec.get("/etc/lvm/lvm.conf")
    assert lvm_conf is not None and lvm_conf.data is not None
    assert b'"a|^/dev/dm\\-0$|", "a|^/dev/mapper/mpatha$|", "r|.*|"' in lvm_conf.data


def test_add_multipath_for_another_machine(kernel: Kernel, sysroot: Host,
                                           tmp_path: Path) -> None:
    cfg = KdumpConfig(target=Target(TargetKind.LOCAL, device=f"UUID={FS}", fstype="ext4"),
                      path="/var/crash")
    res = assemble(host_only_request(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
                        add_modules=("multipath",), add_drivers=("virtio_blk",)))
    assert {"dm_multipath", "dm_service_time"} <= set(res.kernel_modules)
    conf = res.spec.get("/etc/multipath.conf")
    assert conf is not None and conf.data is not None
    assert b"find_multipaths on" in conf.data and b"blacklist" not in conf.data
    (storage,) = _render(res.spec, tmp_path, ["/lib/kdump/storage.sh"])
    assert 'case $_u in mpath-*)' in storage.read_text()
    assert_clean([storage], exclude=["SC2034"])


def test_dump_to_rootfs_brings_up_the_roots_lvm(kernel: Kernel, sysroot: Host,
                                                 tmp_path: Path) -> None:
    # The target is a plain partition (vdb1); / is LV vg0/root on vdd1.
    from mkkdumprd.config.model import Action

    root = fake_machine(tmp_path / "m")
    add_disk(root, "vdd", 7)
    add_dm(root, "dm-1", "vg0-root", lvm_uuid("root"), ["vdd1"])
    (root / "proc/self/mountinfo").write_text(
        "22 1 253:1 / / rw - ext4 /dev/mapper/vg0-root rw\n"
        "36 22 254:17 / /srv/dump rw,relatime shared:1 - ext4 /dev/vdb1 rw\n")
    cfg = KdumpConfig(path="/srv/dump", failure_action=Action.DUMP_TO_ROOTFS)
    res = assemble(host_only_request(kernel, sysroot, Host(root), config=cfg))
    assert res.target.stack is None or not res.target.stack.modules()
    assert {"storage", "lvm", "dump-to-rootfs"} <= set(res.modules)
    assert res.rootfs is not None and res.rootfs.stack is not None
    assert res.rootfs.stack.describe() == "ext4 on LV vg0/root on vdd1"
    assert "dm_mod" in res.kernel_modules
    lvm_conf = res.spec.get("/etc/lvm/lvm.conf")
    assert lvm_conf is not None and lvm_conf.data is not None
    assert b'"a|^/dev/vdd1$|", "r|.*|"' in lvm_conf.data
    storage, rootfs = _render(res.spec, tmp_path, ["/lib/kdump/storage.sh",
                                                  "/lib/kdump/rootfs.sh"])
    assert "kdump_lvm_activate vg0 root vg0-root" in storage.read_text()
    text = rootfs.read_text()
    assert "KDUMP_ROOT_DEV=/dev/mapper/vg0-root" in text and "kdump_storage_up" in text
    assert_clean([storage, rootfs], exclude=["SC2034"])


def test_multipath_without_its_plugins_is_an_error(kernel: Kernel, sysroot: Host,
                                                    tmp_path: Path) -> None:
    from mkkdumprd.errors import OperationError

    root = tmp_path / "root"
    shutil.copytree(sysroot.root, root, symlinks=True)
    shutil.rmtree(root / "lib/multipath")
    with pytest.raises(OperationError, match=r"libchecktur.so and libprioconst.so.*"
                                             r"install multipath-tools"):
        assemble(host_only_request(kernel, Host(root), _mpath_machine(tmp_path)))


def test_dump_to_rootfs_on_a_layer_the_image_cannot_set_up_warns(
        kernel: Kernel, sysroot: Host, tmp_path: Path) -> None:
    # / on a partition of a multipath map (kpartx): the image is still built, for the
    # target, and says dump_to_rootfs will not be there.
    from mkkdumprd.config.model import Action

    root = fake_machine(tmp_path / "m")
    add_disk(root, "vdd", 7, parts=0)
    add_dm(root, "dm-1", "mpatha-part1", "part1-mpath-36001", ["vdd"])
    (root / "proc/self/mountinfo").write_text(
        "22 1 253:1 / / rw - ext4 /dev/mapper/mpatha-part1 rw\n"
        "36 22 254:17 / /srv/dump rw,relatime shared:1 - ext4 /dev/vdb1 rw\n")
    cfg = KdumpConfig(path="/srv/dump", failure_action=Action.DUMP_TO_ROOTFS)
    res = assemble(host_only_request(kernel, sysroot, Host(root), config=cfg))
    assert res.rootfs is None and "multipath" not in res.modules
    assert any(w.startswith("failure_action dump_to_rootfs: the root filesystem is on "
                            "mpatha-part1, partition 1 of a multipath map") and
               w.endswith("the image runs final_action instead") for w in res.warnings), \
        res.warnings
