"""iSCSI under a local target, on fake machine trees: host-only discovery of the session
(target, portal, LUN, initiator name, CHAP from open-iscsi's node record; several
sessions), its errors, the one-line stack, the capture image's iscsi module (iscsi.sh
rendered, shellchecked and run with a stand-in iscsistart), `--add iscsi` refused without
a session, `config check` and `ls --why`. The VM test (tests/vm/test_crash_iscsi.py) logs
in to a real target."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import assemble, build_image
from mkkdumprd.assemble.target import resolve_target
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.storage import iscsi
from mkkdumprd.storage.discover import with_stack
from mkkdumprd.storage.stack import UnsupportedLayer
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import (
    add_disk,
    add_dm,
    add_iscsi_disk,
    add_slirp_nic,
    fake_machine,
    host_only_request,
    lvm_uuid,
    mount_target,
)
from tests.support.shellcheck import assert_clean
from tests.support.sysroot import make_sysroot

FS = "99999999-8888-4777-8666-555555555555"
IQN = "iqn.2026-12.test.mkkdumprd:dump"
OTHER = "iqn.2026-12.test.mkkdumprd:other"
INITIATOR = "iqn.1993-08.org.debian:01:guest"
# Quotes, $(...) and backquotes reach iscsistart as they are, and nothing runs.
SECRET = "pa'ss\"$(touch${IFS}pwned)`touch${IFS}pwned2`"


def _stack(root: Path) -> object:
    system = Host(root)
    t, _ = resolve_target(KdumpConfig(path="/var/crash"), system, True)
    return with_stack(t, system, True)


def _lun(root: Path) -> iscsi.IscsiLun:
    t = _stack(root)
    luns = t.stack.iscsi_luns()  # type: ignore[attr-defined]
    assert len(luns) == 1
    return luns[0]  # type: ignore[no-any-return]


# ---- discovery -----------------------------------------------------------------------------

def test_lun_with_chap(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "m")
    add_iscsi_disk(root, "sdb", session=3, host=5, lun=7, target=IQN, address="192.0.2.10",
                   port=3261, tpgt=2, initiator=INITIATOR,
                   chap={"username": "kd", "password": "s3cret", "username_in": "tg",
                         "password_in": "t4rget"})
    mount_target(root, "sdb", "ext4", FS)
    t = _stack(root)
    stack = t.stack  # type: ignore[attr-defined]
    assert stack.describe() == f"ext4 on sdb (iscsi: {IQN}@192.0.2.10:3261 lun 7, CHAP)"
    assert stack.modules() == ["iscsi"]
    assert {"iscsi_tcp", "sd_mod"} <= set(stack.kernel_modules())
    # The LUN is awaited by the filesystem's UUID, as a plain disk is.
    assert t.device == f"UUID={FS}"  # type: ignore[attr-defined]
    lun = stack.iscsi_luns()[0]
    assert (lun.session, lun.target, lun.address, lun.port, lun.tpgt, lun.lun,
            lun.initiator) == ("session3", IQN, "192.0.2.10", 3261, 2, 7, INITIATOR)
    assert lun.chap == iscsi.Chap("kd", "s3cret", "tg", "t4rget")
    # No secret in what is printed or recorded.
    assert "s3cret" not in repr(lun) and "t4rget" not in repr(lun)
    assert "s3cret" not in stack.describe()


def test_partition_of_a_lun_without_chap(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "m")
    add_iscsi_disk(root, "sda", target=IQN, partitions=2)
    mount_target(root, "sda2", "ext4", FS)
    lun = _lun(root)
    assert lun.chap is None and lun.lun == 1 and lun.portal == "10.0.2.100:3260"
    assert _stack(root).stack.describe() == (  # type: ignore[attr-defined]
        f"ext4 on sda2 (iscsi: {IQN}@10.0.2.100:3260 lun 1)")


def test_the_target_lun_among_several_sessions(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "m")
    add_iscsi_disk(root, "sda", session=1, host=2, target=OTHER, address="192.0.2.1",
                   chap={"username": "a", "password": "other-secret"})
    add_iscsi_disk(root, "sdb", session=2, host=3, lun=4, target=IQN, address="192.0.2.2",
                   chap={"username": "b", "password": "mine"})
    mount_target(root, "sdb", "ext4", FS)
    lun = _lun(root)
    assert (lun.session, lun.target, lun.address, lun.lun) == ("session2", IQN,
                                                               "192.0.2.2", 4)
    assert lun.chap == iscsi.Chap("b", "mine")
    settings = iscsi.settings([lun])
    assert [x.target for x in settings.logins] == [IQN]      # only the needed target


def test_lv_over_two_luns_of_two_sessions(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "m")
    add_iscsi_disk(root, "sda", session=1, host=2, target=IQN, address="192.0.2.1")
    add_iscsi_disk(root, "sdb", session=2, host=3, lun=2, target=OTHER, address="192.0.2.2")
    add_dm(root, "dm-0", "vg0-crash", lvm_uuid("crash"), ["sda", "sdb"])
    mount_target(root, "dm-0", "ext4", FS)
    stack = _stack(root).stack  # type: ignore[attr-defined]
    assert stack.modules() == ["iscsi", "lvm"]
    assert stack.describe() == (f"ext4 on LV vg0/crash on sda (iscsi: {IQN}@192.0.2.1:3260 "
                                f"lun 1) + sdb (iscsi: {OTHER}@192.0.2.2:3260 lun 2)")
    settings = iscsi.settings(stack.iscsi_luns())
    assert [(x.target, x.portal, x.luns) for x in settings.logins] == [
        (IQN, "192.0.2.1:3260", "1"), (OTHER, "192.0.2.2:3260", "2")]


def test_two_luns_of_one_session_are_one_login(tmp_path: Path) -> None:
    a = iscsi.IscsiLun("session1", IQN, "::1", 3260, 1, 1, INITIATOR)
    b = iscsi.IscsiLun("session1", IQN, "::1", 3260, 1, 2, INITIATOR)
    settings = iscsi.settings([a, b])
    assert len(settings.logins) == 1 and settings.logins[0].luns == "1 2"
    assert settings.logins[0].portal == "[::1]:3260"


def test_initiator_name_from_sysfs_when_the_file_is_missing(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "m")
    add_iscsi_disk(root, "sda", target=IQN, initiator=None)
    sess = root / "sys/devices/platform/host2/session1/iscsi_session/session1"
    (sess / "initiatorname").write_text(INITIATOR + "\n")
    mount_target(root, "sda", "ext4", FS)
    assert _lun(root).initiator == INITIATOR


def test_a_plain_scsi_disk_is_no_iscsi(tmp_path: Path) -> None:
    root = fake_machine(tmp_path / "m")
    add_disk(root, "vdc", 6)
    mount_target(root, "vdc1", "ext4", FS)
    assert _stack(root).stack.modules() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("breakage", "message"), [
    ("initiator", "initiator name"),
    ("portal", "its portal cannot be read"),
    ("chap-half", "username or .password is empty"),
    ("chap-blank", "holds a blank or a control character"),
    ("target", "target name"),
])
def test_discovery_errors(tmp_path: Path, breakage: str, message: str) -> None:
    root = fake_machine(tmp_path / "m")
    chap = {"username": "kd", "password": "s3cret"}
    if breakage == "chap-half":
        chap = {"username": "kd"}
    elif breakage == "chap-blank":
        chap = {"username": "kd", "password": "two words"}
    add_iscsi_disk(root, "sda", target=IQN, chap=chap,
                   initiator=None if breakage == "initiator" else INITIATOR)
    sess = root / "sys/devices/platform/host2/session1"
    if breakage == "portal":
        conn = sess / "connection1:0/iscsi_connection/connection1:0"
        (conn / "persistent_address").write_text("not-an-address\n")
    if breakage == "target":
        (sess / "iscsi_session/session1/targetname").write_text("iqn.x\nrm -rf /\n")
    mount_target(root, "sda", "ext4", FS)
    with pytest.raises(UnsupportedLayer, match=message):
        _stack(root)


# ---- the capture image ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def sysroot(tmp_path_factory: pytest.TempPathFactory) -> Host:
    bins = [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p]
    root = make_sysroot(tmp_path_factory.mktemp("sysroot") / "root", bins)
    dest = root / "usr/sbin/iscsistart"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/true", dest)
    return Host(root)


def _machine(tmp_path: Path, chap: dict[str, str] | None) -> Host:
    root = fake_machine(tmp_path / "m")
    add_slirp_nic(root)
    add_iscsi_disk(root, "sda", target=IQN, initiator=INITIATOR, chap=chap)
    mount_target(root, "sda", "ext4", FS)
    return Host(root)


def _script(spec: object, path: str) -> bytes:
    e = spec.get(path) or spec.get(f"/usr{path}")  # type: ignore[attr-defined]
    assert e is not None and e.data is not None, path
    return e.data  # type: ignore[no-any-return]


def test_hostonly_image_logs_in_to_the_target_only(kernel: Kernel, sysroot: Host,
                                                  tmp_path: Path) -> None:
    res = assemble(host_only_request(kernel, sysroot, _machine(tmp_path, {"username": "kd",
                                                             "password": SECRET})))
    assert {"iscsi", "storage", "network", "local"} <= set(res.modules)
    assert {"iscsi_tcp", "libiscsi", "scsi_transport_iscsi", "sd_mod", "virtio_net"} <= \
        set(res.kernel_modules)
    tool = res.spec.get("/usr/sbin/iscsistart")
    assert tool is not None and "module iscsi" in tool.reason
    script = res.spec.get("/lib/kdump/iscsi.sh") or res.spec.get("/usr/lib/kdump/iscsi.sh")
    assert script is not None and script.mode == 0o600
    assert SECRET not in str(res.manifest)
    root = tmp_path / "render"
    for p in ("/lib/kdump/iscsi.sh", "/lib/kdump/storage.sh", "/lib/kdump/target.sh",
              "/lib/kdump/network.sh"):
        f = root / p.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(_script(res.spec, p))
    text = (root / "lib/kdump/iscsi.sh").read_text()
    assert "kdump_iscsi_login 1 iqn.2026-12.test.mkkdumprd:dump 10.0.2.100 3260 1 kd " in text
    assert "kdump_iscsi_prepare || return 1" in (root / "lib/kdump/target.sh").read_text()
    assert_clean([root / "lib/kdump/iscsi.sh", root / "lib/kdump/storage.sh",
                  root / "lib/kdump/target.sh"],
                 # SC2016: the hostile secret's `$(...)` in single quotes, as intended
                 exclude=["SC2034", "SC2016"])
    # The login's arguments as iscsistart gets them: the secret as one word, unexpanded.
    _run_login(root / "lib/kdump/iscsi.sh", tmp_path)


def _run_login(script: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    argv_file = tmp_path / "argv"
    (bindir / "iscsistart").write_text(
        f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >{argv_file}\n')
    (bindir / "iscsistart").chmod(0o755)
    driver = tmp_path / "driver.sh"
    driver.write_text(
        "kinfo() { echo \"kdump: $*\"; }\nkerr() { echo \"kdump: error: $*\"; }\n"
        "kdump_seconds() { echo 0; }\nkdump_net_up() { return 0; }\n"
        "kdump_storage_log() { \"$@\"; }\nkdump_storage_log_tail() { :; }\n"
        "KDUMP_TIMEOUT=5\n"
        f". {script.parent / 'iscsi.sh'}\nkdump_iscsi_prepare\n")
    # network.sh is sourced by iscsi.sh at its image path; an empty one stands in here.
    text = script.read_text().replace(". /lib/kdump/network.sh", ":")
    script.write_text(text)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    r = subprocess.run(["sh", str(driver)], capture_output=True, text=True, env=env,
                       timeout=30, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"iSCSI: logged in to {IQN} at 10.0.2.100:3260" in r.stdout
    assert argv_file.read_text().splitlines() == [
        "-i", INITIATOR, "-t", IQN, "-a", "10.0.2.100", "-p", "3260", "-g", "1",
        "-u", "kd", "-w", SECRET]
    assert not list(tmp_path.glob("pwned*"))


def test_login_failure_names_portal_and_target(kernel: Kernel, sysroot: Host,
                                               tmp_path: Path) -> None:
    res = assemble(host_only_request(kernel, sysroot, _machine(tmp_path, None)))
    script = tmp_path / "iscsi.sh"
    script.write_text(_script(res.spec, "/lib/kdump/iscsi.sh").decode())
    assert_clean([script], exclude=["SC2034", "SC1091"])
    script.write_text(script.read_text().replace(". /lib/kdump/network.sh", ":"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "iscsistart").write_text("#!/bin/sh\necho 'iscsistart: connection refused'\n"
                                       "exit 8\n")
    (bindir / "iscsistart").chmod(0o755)
    driver = tmp_path / "driver.sh"
    # The clock moves 2 s per reading: the 5 s deadline passes after the second attempt.
    driver.write_text(
        "kinfo() { echo \"kdump: $*\"; }\nkerr() { echo \"kdump: error: $*\"; }\n"
        "kdump_seconds() { cat \"$CLOCK\"; echo $(($(cat \"$CLOCK\") + 2)) >\"$CLOCK\"; }\n"
        "kdump_net_up() { return 0; }\nsleep() { :; }\n"
        "KDUMP_STORAGE_LOG=$LOG\n"
        "kdump_storage_log() { \"$@\" >>\"$KDUMP_STORAGE_LOG\" 2>&1; }\n"
        "kdump_storage_log_tail() { :; }\nKDUMP_TIMEOUT=5\n"
        f". {script}\nkdump_iscsi_prepare\necho \"rc=$? reason=$KDUMP_REASON\"\n")
    clock = tmp_path / "clock"
    clock.write_text("0\n")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "CLOCK": str(clock),
           "LOG": str(tmp_path / "storage.log")}
    r = subprocess.run(["sh", str(driver)], capture_output=True, text=True, env=env,
                       timeout=30)
    out = r.stdout
    assert (f"kdump: iSCSI: waiting for {IQN} at portal 10.0.2.100:3260 (LUN 1) "
            f"(attempt 1: iscsistart: connection refused)") in out, out + r.stderr
    assert (f"kdump: error: iSCSI: login to {IQN} at portal 10.0.2.100:3260 (LUN 1) "
            f"failed within 5 s") in out, out
    assert f"rc=1 reason=iSCSI login to {IQN} at portal 10.0.2.100:3260 (LUN 1) failed" \
        in out, out


def test_add_iscsi_needs_host_only(kernel: Kernel, sysroot: Host, tmp_path: Path) -> None:
    cfg = KdumpConfig(target=Target(TargetKind.LOCAL, device=f"UUID={FS}", fstype="ext4"),
                      path="/var/crash")
    with pytest.raises(UsageError, match=r"--add iscsi: .*only host-only discovery reads"):
        assemble(host_only_request(kernel, sysroot, Host(tmp_path), config=cfg, hostonly=False,
                      add_modules=("iscsi",), add_drivers=("virtio_blk",)))


def test_iscsi_under_a_further_target_is_refused(kernel: Kernel, sysroot: Host,
                                                 tmp_path: Path) -> None:
    machine = _machine(tmp_path, None)
    (machine.root / "var/crash/var/crash").mkdir(parents=True)
    first = Target(TargetKind.LOCAL, device="/dev/vdb1", fstype="ext4")
    cfg = KdumpConfig(target=first, path="/var/crash",
                      more_targets=(Target(TargetKind.LOCAL, device=f"UUID={FS}",
                                           fstype="ext4"),))
    with pytest.raises(UsageError, match="only the first dump target may be"):
        assemble(host_only_request(kernel, sysroot, machine, config=cfg))


def test_config_check_and_ls_why_name_the_iscsi_layer(
        kernel: Kernel, sysroot: Host, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mkkdumprd.cli import main

    machine = _machine(tmp_path, {"username": "kd", "password": SECRET})
    out = tmp_path / "capture.img"
    build_image(host_only_request(kernel, sysroot, machine, output=out))
    monkeypatch.setattr(Host, "this_machine", classmethod(lambda cls: machine))
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /var/crash\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert r.exit_code == 0, r.output
    assert f"stack: ext4 on sda (iscsi: {IQN}@10.0.2.100:3260 lun 1, CHAP)\n" in r.output
    r = CliRunner().invoke(main, ["ls", "--why", str(out)])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if "sbin/iscsistart  #" in x)
    assert "module iscsi" in line, line


def test_report_names_the_missing_session_or_lun(tmp_path: Path) -> None:
    """After the target wait: a LUN that gave a disk, a session whose LUN gave none, a
    login with no session, each named with target and portal (the capture kernel's sysfs
    is a fake tree here: paths.sys_iscsi_session under a test root)."""
    from mkkdumprd.assemble.templates import environment, render, taint
    from mkkdumprd.image import layout
    from mkkdumprd.resources import data_dir

    sys_sessions = tmp_path / "sys" / "class" / "iscsi_session"
    ok = sys_sessions / "session1"
    (ok / "device/target2:0:0/2:0:0:1/block/sda").mkdir(parents=True)
    (ok / "targetname").write_text(IQN + "\n")
    nolun = sys_sessions / "session2"
    (nolun / "device/target3:0:0").mkdir(parents=True)
    (nolun / "targetname").write_text(OTHER + "\n")
    logins = (iscsi.IscsiLogin(IQN, "192.0.2.1", "3260", "1", "192.0.2.1:3260", "1"),
              iscsi.IscsiLogin(OTHER, "192.0.2.2", "3260", "1", "192.0.2.2:3260", "2"),
              iscsi.IscsiLogin("iqn.2026-12.test:gone", "192.0.2.3", "3260", "1",
                               "192.0.2.3:3260", "5"))
    paths = {**layout.TEMPLATE_PATHS, "sys_iscsi_session": str(sys_sessions)}
    ctx = {k: taint(v) for k, v in {"paths": paths,
                                    "iscsi": iscsi.IscsiSettings(INITIATOR, logins)}.items()}
    script = tmp_path / "iscsi.sh"
    script.write_text(render(environment([data_dir("templates")]), "iscsi.sh.j2", ctx).replace(
        ". /lib/kdump/network.sh", ":"))
    driver = ("kinfo() { echo \"kdump: $*\"; }\nkerr() { echo \"kdump: error: $*\"; }\n"
              f". {script}\nkdump_iscsi_report\n")
    r = subprocess.run(["sh", "-c", driver], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"kdump: iSCSI: {IQN} at portal 192.0.2.1:3260: LUN 1 is sda",
        f"kdump: error: iSCSI: logged in to {OTHER} at portal 192.0.2.2:3260, but its LUN 2 "
        f"did not appear",
        "kdump: error: iSCSI: no session to iqn.2026-12.test:gone at portal 192.0.2.3:3260 "
        "(LUN 5)"]
