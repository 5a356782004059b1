"""A dump to ext4 on an iSCSI LUN with a real Debian kernel: Debian's tgtd on 127.0.0.1
(a free port, a private management socket, a sparse backing file, a CHAP account) is
reached by the guest at 10.0.2.100:3260 through a guestfwd relay (restrict=on). The first
kernel logs in with open-iscsi's iscsistart (from the test's tools root, never installed
here) and mounts the LUN at /var/crash; the capture image, built host-only against a
machine tree describing that guest (its NIC, route, iSCSI session, initiator name and
node record with the CHAP secret), brings the network up, logs in and dumps. The vmcore is
read back from the backing file with debugfs (nothing mounted here) and checked with
makedumpfile --dump-dmesg. The second test has no target listening at dump time: the
console names the portal and target, then failure_action runs.
"""

from __future__ import annotations

import shlex
import stat
import uuid
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import BuildRequest, BuildResult, build_image
from mkkdumprd.config.model import Action, KdumpConfig
from mkkdumprd.host import Host
from mkkdumprd.image.reader import read_file, read_members
from mkkdumprd.vmtest.servers import GUEST_SERVER_IP, free_port
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import add_iscsi_disk, add_slirp_nic, fake_machine, mount_target
from tests.support.storage_tools import storage_tools
from tests.vm.harness import disks, vmcore
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER
from tests.vm.harness.iscsi import (
    GUEST_MAC,
    ISCSI_PORT,
    TgtTarget,
    crash_over_iscsi,
    first_kernel_script,
)

IQN = "iqn.2026-12.test.mkkdumprd:dump"
INITIATOR = "iqn.1993-08.org.debian:01:kdumpguest"
CHAP = ("kdumpuser", "s3cret-pass'$(x)")     # quotes and $(...) must reach iscsistart as is
WAIT = 15


@pytest.fixture(scope="module")
def tools() -> Path:
    return storage_tools("iscsi")


def _machine(root: Path, fs: str, chap: tuple[str, str] | None) -> Host:
    """The guest as a host-only build sees it: a virtio NIC with slirp's addresses, sda the
    LUN 1 of an iSCSI session to 10.0.2.100:3260, its ext4 mounted at /var/crash."""
    fake_machine(root)
    add_slirp_nic(root, GUEST_MAC)
    add_iscsi_disk(root, "sda", target=IQN, address=GUEST_SERVER_IP, port=ISCSI_PORT,
                   initiator=INITIATOR,
                   chap={"username": chap[0], "password": chap[1]} if chap else None)
    mount_target(root, "sda", "ext4", fs, "/var/crash")
    return Host(root)


def _build(kernel: Kernel, tools: Path, tmp_path: Path, fs: str,
           config: KdumpConfig) -> BuildResult:
    out = tmp_path / "capture.img"
    res = build_image(BuildRequest(
        config=config, kver=kernel.kver, kmoddir=kernel.kmoddir, sysroot=Host(tools),
        machine=_machine(tmp_path / "machine", fs, CHAP), arch="x86_64", hostonly=True,
        add_drivers=("virtio_pci",), timeout=30, output=out))
    assert res.target.stack is not None
    assert res.target.stack.describe() == \
        f"ext4 on sda (iscsi: {IQN}@{GUEST_SERVER_IP}:{ISCSI_PORT} lun 1, CHAP)"
    assert {"iscsi", "network", "storage"} <= set(res.modules)
    assert {"iscsi_tcp", "libiscsi", "scsi_transport_iscsi", "sd_mod", "virtio_net"} <= \
        set(res.kernel_modules)
    return res


def _secret_only_in_image(res: BuildResult, image: Path) -> None:
    """The CHAP secret is in the 0600 iscsi.sh of the 0600 image, not in the manifest."""
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    modes = {m.path: m.mode for m in read_members(image)}
    assert modes["/lib/kdump/iscsi.sh"] == 0o600
    assert shlex.quote(CHAP[1]).encode() in read_file(image, "/lib/kdump/iscsi.sh")
    assert CHAP[1].encode() not in read_file(image, "/etc/mkkdumprd/manifest.json")
    assert CHAP[1] not in str(res.manifest)


@pytest.mark.vm
@pytest.mark.slow  # 67-81 s here under other helpers' load (one crash cycle)
def test_ext4_on_iscsi_lun_with_chap(kernel: Kernel, tools: Path, tmp_path: Path) -> None:
    fs = str(uuid.uuid4())
    res = _build(kernel, tools, tmp_path, fs, KdumpConfig(path="/var/crash"))
    assert res.output is not None
    _secret_only_in_image(res, res.output)
    lun = disks.make_ext4(tmp_path / "lun1.img", fs, 512)
    with TgtTarget(tmp_path, IQN, lun, CHAP).start() as tgt:
        console = crash_over_iscsi(
            kernel, tools, res.output,
            first_kernel_script(IQN, INITIATOR, fs, "/var/crash", CHAP),
            [tgt.guestfwd()], tmp_path)
    assert "MKKDUMPRD-ISCSI: login without CHAP refused" in console, console[-4000:]
    assert "MKKDUMPRD-ISCSI: first kernel sees " + IQN in console, console[-4000:]
    capture = console.split(LOADED_MARKER, 1)[-1]
    assert f"iSCSI: logged in to {IQN} at {GUEST_SERVER_IP}:{ISCSI_PORT}" in capture, \
        capture[-4000:]
    assert f"storage: {res.target.stack.describe()}" in capture  # type: ignore[union-attr]
    assert "kdump: dump saved to" in capture, capture[-4000:]
    found = disks.ext4_find_dumps(lun, "/")
    dumps = [d for d in found if d.startswith("127.0.0.1-")]
    assert len(dumps) == 1, f"{found}; console:\n{capture[-4000:]}"
    names = {e.name for e in disks.ext4_ls(lun, f"/{dumps[0]}")}
    assert {"vmcore", "vmcore-dmesg.txt"} <= names and "vmcore-incomplete" not in names, names
    core = disks.ext4_dump(lun, f"/{dumps[0]}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(core, tmp_path / "dmesg.txt"), "vmcore")


@pytest.mark.vm
@pytest.mark.long  # 55-78 s here under other helpers' load (one crash cycle, kdump.timeout=15)
def test_iscsi_target_down_names_portal_and_runs_failure_action(
        kernel: Kernel, tools: Path, tmp_path: Path) -> None:
    # The first kernel does not log in: nothing listens behind the guestfwd at dump time.
    fs = str(uuid.uuid4())
    res = _build(kernel, tools, tmp_path, fs,
                 KdumpConfig(path="/var/crash", failure_action=Action.POWEROFF))
    assert res.output is not None
    closed = free_port()
    console = crash_over_iscsi(
        kernel, tools, res.output, "true",
        [f"tcp:{GUEST_SERVER_IP}:{ISCSI_PORT}-cmd:/bin/busybox nc 127.0.0.1 {closed}"],
        tmp_path, capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")
    capture = console.split(LOADED_MARKER, 1)[-1]
    assert (f"kdump: error: iSCSI: login to {IQN} at portal {GUEST_SERVER_IP}:{ISCSI_PORT} "
            f"(LUN 1) failed within {WAIT} s") in capture, capture[-4000:]
    assert "kdump: dump failed:" in capture and "iSCSI login to" in capture, capture[-4000:]
    assert "iscsistart: no login within" in capture, capture[-4000:]
    assert "failure action: powering off" in capture, capture[-4000:]
