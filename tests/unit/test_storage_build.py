"""Capture images for stacked targets: host-only on a fake machine (LV on md RAID1), for
another machine with --add, and the LUKS refusal on a kernel without CRASH_DM_CRYPT.
The layer tools come from a sysroot where they are stand-ins (this machine has no lvm2 or
mdadm; the VM tests run the real ones)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import BuildRequest, assemble
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
    for tool in ("lvm", "mdadm", "cryptsetup", "btrfs"):
        dest = root / "usr/sbin" / tool
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


def _req(kernel: Kernel, sysroot: Host, machine: Host, **kw: object) -> BuildRequest:
    args: dict[str, object] = dict(config=KdumpConfig(path="/var/crash"), kver=kernel.kver,
                                   kmoddir=kernel.kmoddir, sysroot=sysroot, machine=machine,
                                   arch="x86_64", hostonly=True)
    args.update(kw)
    return BuildRequest(**args)  # type: ignore[arg-type]


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
    res = assemble(_req(kernel, sysroot, _machine(tmp_path)))
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
    res = assemble(_req(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
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
        assemble(_req(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
                      add_modules=("zfs",)))
    nfs = KdumpConfig(target=Target(TargetKind.NFS, server="10.0.0.1:/e"), path="/x")
    with pytest.raises(UsageError, match="storage modules set up a local dump target"):
        assemble(_req(kernel, sysroot, Host(tmp_path), config=nfs, hostonly=False,
                      add_modules=("lvm",)))


def test_luks_target_refused_on_a_kernel_without_crash_dm_crypt(
        kernel: Kernel, sysroot: Host, tmp_path: Path) -> None:
    # The Debian 6.1 test kernel has no CONFIG_CRASH_DM_CRYPT (6.16+).
    cfg = KdumpConfig(target=Target(TargetKind.LOCAL, device=f"UUID={FS}", fstype="ext4"),
                      path="/var/crash")
    with pytest.raises(UsageError, match=r"LUKS volume.*CONFIG_CRASH_DM_CRYPT"):
        assemble(_req(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
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
    res = assemble(_req(kernel, Host(root), Host(machine)))
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
    (machine.root / "sys/devices/virtual/block/dm-0/dm/uuid").write_text("mpath-36001\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert r.exit_code == 2 and "vg0-crash (multipath)" in r.output, r.output
