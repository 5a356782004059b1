"""The builder on real parts: the Debian test kernel's modules, this machine's busybox and
makedumpfile (copied into a temporary sysroot where the test needs to control them), and
fake /proc + /sys trees for host-only builds."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.assemble.builder import BuildRequest, assemble, build_image, fold_symlinked_dirs
from mkkdumprd.assemble.manifest import MANIFEST_PATH
from mkkdumprd.assemble.rebuild_policy import Overwrite, ensure_image
from mkkdumprd.config.model import Action, KdumpConfig, Target, TargetKind
from mkkdumprd.errors import MkkdumprdError, OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.reader import read_file, read_members
from mkkdumprd.image.spec import EntryConflict, ImageSpec, Kind, data_entry, symlink_entry
from mkkdumprd.resources import data_dir
from mkkdumprd.sha256 import sha256_file
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import ROOT_UUID, UUID, fake_machine
from tests.support.sysroot import ldd_libraries, make_sysroot

VIRTIO = ("virtio_pci", "virtio_blk")




def _config(**kw: object) -> KdumpConfig:
    base: dict[str, object] = {
        "target": Target(TargetKind.LOCAL, device="/dev/vda", fstype="ext4"),
        "path": "/var/crash"}
    base.update(kw)
    return KdumpConfig(**base)  # type: ignore[arg-type]


def _req(kernel: Kernel, view: Host, **kw: object) -> BuildRequest:
    args: dict[str, object] = dict(config=_config(), kver=kernel.kver, kmoddir=kernel.kmoddir,
                                   sysroot=view, machine=view, arch="x86_64", hostonly=False,
                                   add_drivers=VIRTIO)
    args.update(kw)
    return BuildRequest(**args)  # type: ignore[arg-type]


# ---- the real image, as a user builds it ------------------------------------------------

def test_real_image_for_the_debian_kernel(kernel: Kernel, tmp_path: Path) -> None:
    out = tmp_path / "capture.img"
    res = build_image(_req(kernel, Host.this_machine(),
                           config=_config(target=Target(TargetKind.LOCAL, device="/dev/vda")),
                           add_drivers=(*VIRTIO, "ext4"), output=out))
    assert res.stats is not None and out.stat().st_size == res.stats.compressed_size
    members = {m.path: m for m in read_members(out)}
    assert res.stats.entries == len(members)
    init = read_file(out, "/init").decode()
    assert init.startswith("#!/bin/sh\n") and members["/init"].mode == 0o755
    # busybox and its applets, makedumpfile with its libraries.
    sh = members["/bin/sh"]
    assert sh.kind == "symlink" and sh.target and sh.target.endswith("busybox")
    bb = str(Host.this_machine().resolve(sh.target))
    assert members[bb].kind == "file"
    mdf = shutil.which("makedumpfile")
    assert mdf
    for lib in ldd_libraries(mdf):
        real = os.path.realpath(lib)
        assert real in members or real.replace("/lib/", "/usr/lib/", 1) in members, lib
    # Kernel modules, decompressed, and the load list in dependency order.
    # The reader does not follow symlinks: on merged-/usr hosts /lib is one in the image.
    moddir = str(Host.this_machine().resolve("/lib/modules"))
    load = read_file(out, f"{moddir}/{kernel.kver}/modules.load").decode().split()
    names = [PurePosixPath(x).name for x in load]
    for mod in ("virtio_pci.ko", "virtio_blk.ko", "ext4.ko", "jbd2.ko"):
        assert mod in names
    assert names.index("virtio_ring.ko") < names.index("virtio_blk.ko")
    assert names.index("jbd2.ko") < names.index("ext4.ko")
    for rel in load:
        head = read_file(out, f"{moddir}/{kernel.kver}/{rel}")[:4]
        assert head == b"\x7fELF", rel
    # The manifest says why each member is there.
    manifest = json.loads(read_file(out, MANIFEST_PATH))
    assert set(manifest["entries"]) == set(members) - {"/"}
    assert "virtio_blk" in manifest["kernel_modules"]
    assert manifest["config"]["target"]["device"] == "/dev/vda"
    assert manifest["kver"] == kernel.kver and manifest["arch"] == "x86_64"
    ext4 = f"{moddir}/{kernel.kver}/kernel/fs/ext4/ext4.ko"
    assert "kernel module ext4" in manifest["entries"][ext4]
    conf = read_file(out, "/etc/kdump.conf").decode()
    assert "path /var/crash\n" in conf and "final_action reboot\n" in conf
    # The warning about an unknown filesystem type is given.
    assert any("filesystem type of /dev/vda is unknown" in w for w in res.warnings)


def test_sysroot_build_takes_everything_from_the_sysroot(kernel: Kernel, tmp_path: Path) -> None:
    bins = [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p]
    root = make_sysroot(tmp_path / "root", bins)
    res = assemble(_req(kernel, Host(root)))
    sources = [e.source for e in res.spec if e.source is not None]
    for s in sources:
        assert str(s).startswith(str(root)) or str(s).startswith(str(kernel.root)), s
    assert "vmcore-dmesg" not in json.dumps(res.manifest["binaries"])
    collector = next(e for e in res.spec if e.path.name == "collector.sh")
    assert collector is not None and collector.data is not None
    assert b"makedumpfile --dump-dmesg" in collector.data  # no vmcore-dmesg in this root
    for path, digest in res.manifest["inputs"].items():
        assert sha256_file(Path(path)) == digest
    assert any(str(root) in p for p in res.manifest["inputs"])
    # Only the applets the scripts use are linked.
    applets = {e.path.name for e in res.spec if e.kind is Kind.SYMLINK
               and (e.target or "").endswith("busybox")}
    assert {"sh", "mount", "insmod", "findfs", "reboot"} <= applets
    assert "vi" not in applets and "nc" not in applets


def test_raw_target_adds_dd(kernel: Kernel, tmp_path: Path) -> None:
    res = assemble(_req(kernel, Host.this_machine(),
                        config=_config(target=Target(TargetKind.RAW, device="/dev/vdb"))))
    assert "raw" in res.modules and "local" not in res.modules
    assert any(e.path.name == "dd" and e.kind is Kind.SYMLINK for e in res.spec)
    target = next(e for e in res.spec if e.path.name == "target.sh")
    assert target.data and b"KDUMP_TARGET=/dev/vdb" in target.data
    assert res.kernel_modules[-1] == "virtio_blk" or "virtio_blk" in res.kernel_modules


def test_without_busybox_host_tools_are_used(kernel: Kernel, tmp_path: Path) -> None:
    bins = [p for p in (shutil.which("dash") or shutil.which("bash"), shutil.which("mount"),
                        shutil.which("makedumpfile")) if p]
    root = make_sysroot(tmp_path / "root", bins)
    res = assemble(_req(kernel, Host(root)))
    sh = res.spec.get("/bin/sh") or res.spec.get("/usr/bin/sh")
    assert sh is not None and sh.kind is Kind.SYMLINK
    assert "busybox" not in (sh.target or "")
    assert any("no busybox" in w for w in res.warnings)
    missing = next(w for w in res.warnings if "has no" in w)
    listed = missing.split("has no ")[1].split(" (")[0].split(", ")
    assert "insmod" in listed and "findfs" in listed and "mount" not in listed


def test_missing_makedumpfile_is_an_error(kernel: Kernel, tmp_path: Path) -> None:
    root = make_sysroot(tmp_path / "root", [p for p in [shutil.which("busybox")] if p])
    with pytest.raises(OperationError, match=r"makedumpfile \(needed by module makedumpfile\) "
                                             r"is not installed in"):
        assemble(_req(kernel, Host(root)))


def test_unknown_driver_suggests_near_names(kernel: Kernel) -> None:
    with pytest.raises(MkkdumprdError, match="virtio_blk"):
        assemble(_req(kernel, Host.this_machine(), add_drivers=("virtio_blkk",)))


def test_omit_drivers_leaves_modules_out(kernel: Kernel) -> None:
    res = assemble(_req(kernel, Host.this_machine(), add_drivers=(*VIRTIO, "ext4"),
                        omit_drivers=("crc32c_intel",)))
    assert "crc32c_intel" not in res.kernel_modules and "ext4" in res.kernel_modules


def test_two_modules_claiming_one_path_name_both_reasons(kernel: Kernel, tmp_path: Path) -> None:
    mods = tmp_path / "modules.d"
    shutil.copytree(data_dir("modules.d"), mods)
    (mods / "evil").mkdir()
    (mods / "evil" / "module.toml").write_text(
        'name = "evil"\ndescription = "claims /etc/kdump.conf"\nwhen = "always"\n'
        'files = [{ src = "/etc/hostname", dest = "/init" }]\n')
    if not Path("/etc/hostname").exists():
        pytest.skip("no /etc/hostname to copy")
    with pytest.raises(EntryConflict) as exc:
        assemble(_req(kernel, Host.this_machine(), modules_dir=mods))
    msg = str(exc.value)
    assert "/init" in msg and "module evil" in msg and "template init.sh.j2 (module base)" in msg


def test_nfs_target_without_module_is_a_clear_error(kernel: Kernel, tmp_path: Path) -> None:
    mods = tmp_path / "modules.d"
    shutil.copytree(data_dir("modules.d"), mods, ignore=shutil.ignore_patterns("network", "nfs",
                                                                              "ssh"))
    cfg = _config(target=Target(TargetKind.NFS, server="srv:/export"))
    with pytest.raises(UsageError, match=r"no module in modules\.d handles nfs targets"):
        assemble(_req(kernel, Host.this_machine(), config=cfg, modules_dir=mods))


def test_kdump_pre_post_and_extra_bins_go_in(kernel: Kernel, tmp_path: Path) -> None:
    root = make_sysroot(tmp_path / "root",
                        [p for p in (shutil.which("busybox"), shutil.which("makedumpfile"),
                                     shutil.which("true")) if p])
    hooks = root / "usr/local/bin"
    hooks.mkdir(parents=True)
    (hooks / "pre.sh").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre.sh").chmod(0o755)
    cfg = _config(kdump_pre="/usr/local/bin/pre.sh", kdump_post=shutil.which("true"),
                  extra_bins=("true",), failure_action=Action.SHELL)
    res = assemble(_req(kernel, Host(root), config=cfg))
    pre = res.spec.get("/usr/local/bin/pre.sh")
    assert pre is not None and pre.mode == 0o755 and "kdump_pre" in pre.reason
    assert res.spec.get("/bin/sh") is not None  # busybox's, not the host's dash
    true_real = Host(root).resolve(shutil.which("true") or "")
    assert any(e.path == true_real for e in res.spec)
    kdump = next(e for e in res.spec if e.path.name == "90-kdump.sh")
    assert kdump.data and b"/usr/local/bin/pre.sh\n" in kdump.data


def test_missing_kdump_pre_is_an_error(kernel: Kernel) -> None:
    with pytest.raises(UsageError, match="kdump_pre /nonexistent/pre does not exist"):
        assemble(_req(kernel, Host.this_machine(), config=_config(kdump_pre="/nonexistent/pre")))


def test_existing_output_needs_force(kernel: Kernel, tmp_path: Path) -> None:
    out = tmp_path / "x.img"
    out.write_text("old")
    with pytest.raises(UsageError, match="already exists; use --force"):
        ensure_image(_req(kernel, Host.this_machine(), output=out))
    assert out.read_text() == "old"
    ensure_image(_req(kernel, Host.this_machine(), output=out), Overwrite.ALWAYS)
    assert out.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd


def test_same_inputs_same_bytes(kernel: Kernel, tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    build_image(_req(kernel, Host.this_machine(), output=a))
    build_image(_req(kernel, Host.this_machine(), output=b))
    assert a.read_bytes() == b.read_bytes()


# ---- folding entries under symlinked directories ----------------------------------------

def test_fold_moves_entries_below_directory_symlinks() -> None:
    spec = ImageSpec()
    spec.add(symlink_entry("/lib", "usr/lib", "merged /usr"))
    spec.add(symlink_entry("/usr/lib64", "/lib/x", "abs"))
    spec.add(data_entry("/lib/modules/k/modules.load", "", "load list"))
    spec.add(data_entry("/usr/lib64/ld.so", "x", "loader"))
    out = fold_symlinked_dirs(spec)
    paths = {str(e.path) for e in out}
    assert paths == {"/lib", "/usr/lib64", "/usr/lib/modules/k/modules.load",
                     "/usr/lib/x/ld.so"}
    out.complete()  # no entry below a symlink any more


# ---- host-only builds on a fake machine ---------------------------------------------------

def test_hostonly_local_from_path_finds_device_and_drivers(kernel: Kernel,
                                                           tmp_path: Path) -> None:
    system = Host(fake_machine(tmp_path / "m"))
    cfg = KdumpConfig(path="/srv/dump/crash")
    res = assemble(_req(kernel, Host.this_machine(), machine=system, config=cfg, hostonly=True,
                        add_drivers=()))
    assert res.target.device == f"UUID={UUID}"
    assert res.target.path == "/crash" and res.target.fstype == "ext4"
    assert {"virtio_pci", "virtio_blk", "ext4"} <= set(res.kernel_modules)
    conf = res.spec.get("/etc/kdump.conf")
    assert conf is not None and conf.data is not None
    assert f"ext4 UUID={UUID}\npath /crash\n".encode() in conf.data


def test_hostonly_raw_device_drivers(kernel: Kernel, tmp_path: Path) -> None:
    system = Host(fake_machine(tmp_path / "m"))
    cfg = _config(target=Target(TargetKind.RAW, device="/dev/vdb"))
    res = assemble(_req(kernel, Host.this_machine(), machine=system, config=cfg, hostonly=True,
                        add_drivers=()))
    assert {"virtio_pci", "virtio_blk"} <= set(res.kernel_modules)
    assert "ext4" not in res.kernel_modules


def test_hostonly_missing_device_is_an_error(kernel: Kernel, tmp_path: Path) -> None:
    system = Host(fake_machine(tmp_path / "m"))
    cfg = _config(target=Target(TargetKind.LOCAL, device="UUID=feed", fstype="ext4"))
    with pytest.raises(UsageError, match=r"target device UUID=feed not found on this machine"):
        assemble(_req(kernel, Host.this_machine(), machine=system, config=cfg, hostonly=True))


def test_dump_to_rootfs_module_knows_the_root_filesystem(kernel: Kernel, tmp_path: Path) -> None:
    system = Host(fake_machine(tmp_path / "m"))
    cfg = _config(target=Target(TargetKind.RAW, device="/dev/vdb"),
                  failure_action=Action.DUMP_TO_ROOTFS)
    res = assemble(_req(kernel, Host.this_machine(), machine=system, config=cfg, hostonly=True,
                        add_drivers=()))
    assert "dump-to-rootfs" in res.modules
    assert "ext4" in res.kernel_modules  # for the root filesystem, not the raw target
    rootfs = next(e for e in res.spec if e.path.name == "rootfs.sh")
    assert rootfs.data and f"KDUMP_ROOT_DEV=UUID={ROOT_UUID}\n".encode() in rootfs.data
    kdump = next(e for e in res.spec if e.path.name == "90-kdump.sh")
    assert kdump.data and b"/rootfs.sh" in kdump.data
    # Built for another machine, the root filesystem is unknown: said at build time.
    res = assemble(_req(kernel, Host.this_machine(), machine=system, config=cfg))
    assert any("dump_to_rootfs" in w and "--no-hostonly" in w for w in res.warnings)


def test_hook_dirs_and_executable_checks(kernel: Kernel, tmp_path: Path) -> None:
    root = make_sysroot(tmp_path / "root",
                        [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p])
    pre_d = root / "etc/kdump/pre.d"
    pre_d.mkdir(parents=True)
    (pre_d / "10-run").write_text("#!/bin/sh\ntrue\n")
    (pre_d / "10-run").chmod(0o755)
    (pre_d / "20-plain").write_text("#!/bin/sh\ntrue\n")
    (pre_d / "20-plain").chmod(0o644)
    res = assemble(_req(kernel, Host(root)))
    assert res.spec.get("/etc/kdump/pre.d/10-run") is not None
    assert res.spec.get("/etc/kdump/pre.d/20-plain") is None
    assert any("/etc/kdump/pre.d/20-plain is not executable" in w for w in res.warnings)
    plain = "/etc/kdump/pre.d/20-plain"
    with pytest.raises(UsageError, match=re.escape(f"kdump_pre {plain} is not executable")):
        assemble(_req(kernel, Host(root), config=_config(kdump_pre=plain)))


@pytest.mark.parametrize(("key", "where", "link"), [
    ("kdump_pre", "/tmp/pre.sh", None),
    ("kdump_post", "/run/kdump/post.sh", None),
    ("extra_bins", "/usr/local/bin/tool", "/run/tool"),
])
def test_files_under_tmp_or_run_are_refused(kernel: Kernel, tmp_path: Path, key: str,
                                            where: str, link: str | None) -> None:
    """/init mounts tmpfs on /tmp and /run: what the image kept there is hidden at dump time."""
    root = make_sysroot(tmp_path / "root",
                        [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p])
    real = root / (link or where).lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_text("#!/bin/sh\ntrue\n")
    real.chmod(0o755)
    if link:
        (root / where.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / where.lstrip("/")).symlink_to(link)
    value: object = (where,) if key == "extra_bins" else where
    hidden = "/tmp" if "/tmp" in (link or where) else "/run"
    with pytest.raises(UsageError, match=re.escape(f"{key} {where} is under {hidden}")):
        assemble(_req(kernel, Host(root), config=_config(**{key: value})))


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="needs makedumpfile")
def test_collector_options_the_shipped_makedumpfile_refuses_fail_the_build(
        kernel: Kernel) -> None:
    bogus = ("makedumpfile", "-l", "--bogus", "-d", "31")
    with pytest.raises(UsageError, match="unrecognized option '--bogus'"):
        assemble(_req(kernel, Host.this_machine(), config=_config(core_collector=bogus)))


def test_collector_options_are_not_run_from_a_sysroot(kernel: Kernel, tmp_path: Path) -> None:
    root = make_sysroot(tmp_path / "root",
                        [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p])
    res = assemble(_req(kernel, Host(root)))
    assert any("core_collector options were not checked" in w for w in res.warnings)


def test_the_same_host_file_twice_is_one_entry_without_reading_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mkkdumprd.image import spec as spec_mod
    from mkkdumprd.image.spec import file_entry

    f = tmp_path / "lib.so"
    f.write_bytes(b"x")
    spec = ImageSpec()
    spec.add(file_entry("/lib/lib.so", f, "library (binary a)", mode=0o755))
    monkeypatch.setattr(spec_mod, "sha256_file", lambda p: pytest.fail("read"))
    spec.add(file_entry("/lib/lib.so", f, "library (binary b)", mode=0o755))
    assert len(spec) == 1
    monkeypatch.undo()
    with pytest.raises(EntryConflict):  # another mode: still a conflict
        spec.add(file_entry("/lib/lib.so", f, "library (binary c)", mode=0o644))


def test_fold_finds_links_by_prefix_only_at_path_boundaries() -> None:
    """/libx is not below /lib; a link at the deepest parent still moves the entry."""
    spec = ImageSpec()
    spec.add(symlink_entry("/lib", "usr/lib", "merged /usr"))
    spec.add(symlink_entry("/usr/share/a/b", "/c", "deep"))
    spec.add(data_entry("/libx/f", "", "not below /lib"))
    spec.add(data_entry("/usr/share/a/b/f", "", "below a deep link"))
    spec.add(data_entry("/usr/share/a/bc", "", "beside it"))
    out = fold_symlinked_dirs(spec)
    assert {str(e.path) for e in out if e.kind is Kind.FILE} == {
        "/libx/f", "/c/f", "/usr/share/a/bc"}
