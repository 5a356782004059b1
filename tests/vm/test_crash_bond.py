"""Crash a real kernel; the capture image rebuilds the machine's bond (and a VLAN on it) and
dumps over NFS through it.

The guest has two virtio NICs. The bond is active-backup with the first NIC as `primary`,
and that NIC has no link (QEMU's `set_link nic0 off`, sent on the monitor before the guest
boots): the capture kernel's bond must fail over to the second NIC. Networks are QEMU's
user networking with restrict=on and one guestfwd to nfs-ganesha on 127.0.0.1; the VLAN
case goes through tests/vm/harness/vlan_relay.py, which passes only frames tagged with the
VLAN id to slirp (slirp drops tagged frames itself).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from mkkdumprd.host import Host
from tests.support.debian_kernel import Kernel
from tests.support.fake_network import FakeNet
from tests.vm.harness import vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import LOADED_MARKER
from tests.vm.harness.vlan_relay import VlanRelay, monitor_command
from tests.vm.servers import GUEST_SERVER_IP, NfsServer

DUMP_DIR = re.compile(r"10\.0\.2\.15-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")
MAC_DEAD, MAC_LIVE = "52:54:00:12:34:56", "52:54:00:12:34:57"
VID = 100


def _machine(root: Path, vlan: bool) -> Host:
    """The guest as a host-only build sees it: bond0 (active-backup, the dead NIC primary,
    miimon 100) over two virtio NICs, the address on bond0 or on bond0.100. In the VLAN
    case the host's names are the other way round from the capture kernel's (the dead
    NIC, the guest's first, is "eth1"), so the capture image must swap them."""
    net = FakeNet(root)
    dead, live = ("eth1", "eth0") if vlan else ("eth0", "eth1")
    net.virtio_nic(dead, MAC_DEAD, slot=2)
    net.virtio_nic(live, MAC_LIVE, slot=3)
    net.bond("bond0", MAC_DEAD, [dead, live], perm={live: MAC_LIVE},
             options={"primary": dead})
    top = "bond0"
    if vlan:
        top = f"bond0.{VID}"
        net.vlan(top, MAC_DEAD, "bond0", VID)
    net.addr4(top, "10.0.2.15/24")
    net.route4(top, "0.0.0.0/0", "10.0.2.2")
    net.commit()
    # the export as the machine mounts it (NFSv4.1: no rpcbind, which slirp cannot reach)
    net.write("/proc/self/mountinfo",
              "40 1 0:40 / /mnt/dumps rw,relatime - nfs4 10.0.2.100:/export rw,vers=4.1,"
              "proto=tcp,sec=sys,addr=10.0.2.100\n")
    return Host(root)


def _nics(live_netdev: str) -> list[str]:
    return ["-netdev", "user,id=dead,restrict=on",
            "-device", f"virtio-net-pci,netdev=dead,id=nic0,mac={MAC_DEAD}",
            "-device", f"virtio-net-pci,netdev={live_netdev},id=nic1,mac={MAC_LIVE}"]


@pytest.mark.vm
@pytest.mark.parametrize("vlan", [
    False,
    # ~2.3 min on a loaded 2-core machine (its nfs twin without VLAN stays in the default run)
    pytest.param(True, marks=pytest.mark.long),   # ~2 min: a VLAN relay and a bond
], ids=["bond", "vlan-on-bond"])
def test_dump_through_a_bond_whose_primary_has_no_link(kernel: Kernel, tmp_path: Path,
                                                        vlan: bool) -> None:
    from mkkdumprd.assemble.builder import BuildRequest, build_image
    from mkkdumprd.config.kdumpconf import load_kdump_conf

    conf = tmp_path / "kdump.conf"
    conf.write_text(f"nfs {GUEST_SERVER_IP}:/export\npath /\n"
                    "core_collector makedumpfile -l --message-level 7 -d 31\n")
    result = build_image(BuildRequest(
        config=load_kdump_conf(conf), kver=kernel.kver, kmoddir=kernel.kmoddir,
        sysroot=Host.this_machine(), machine=_machine(tmp_path / "guest", vlan),
        arch="x86_64", hostonly=True, output=tmp_path / "capture.img"))
    assert {"virtio_net", "bonding", *(["8021q"] if vlan else [])} <= \
        set(result.kernel_modules)
    monitor = tmp_path / "monitor.sock"
    with NfsServer(tmp_path / "nfs").start() as srv, VlanRelay(VID) as relay:
        if vlan:
            nets = [*relay.qemu_args("live", srv.guestfwd(2049)), *_nics("live")]
        else:
            fwd = srv.guestfwd(2049).replace(",", ",,")
            nets = ["-netdev", f"user,id=live,restrict=on,guestfwd={fwd}", *_nics("live")]
        answers: list[str] = []
        unplug = threading.Thread(target=lambda: answers.append(
            monitor_command(monitor, "set_link nic0 off")), daemon=True)
        unplug.start()
        run = crash_cycle(kernel, tmp_path / "capture.img", [], tmp_path, extra_args=[
            *nets, "-monitor", f"unix:{monitor},server=on,wait=off"])
        unplug.join(5)
        tagged, dropped = relay.tagged, relay.dropped
    console = run.console.split(LOADED_MARKER, 1)[-1]
    assert answers and "rror" not in answers[0], answers
    top = f"bond0.{VID}" if vlan else "bond0"
    assert "network: bond bond0, mode active-backup" in console, console[-4000:]
    # the bond failed over from the dead primary to the live NIC, by the host's names
    live = "eth0" if vlan else "eth1"
    assert f"bond0: (slave {live}): making interface the new active one" in console, \
        console[-4000:]
    assert f"network: {top} is up, 10.0.2.15 -> {GUEST_SERVER_IP}" in console, console[-4000:]
    if vlan:
        assert f"network: VLAN {top}, id {VID} on bond0" in console, console[-4000:]
        # the dump's frames all went through the relay, which passes only VID 100
        assert tagged > 1000, (tagged, dropped)
    dumps = [p for p in srv.export.iterdir() if DUMP_DIR.fullmatch(p.name)]
    assert len(dumps) == 1, f"{list(srv.export.iterdir())}; console:\n{console[-4000:]}"
    # with the outcome record and the capture kernel's log beside the dump (#17, #20)
    assert sorted(p.name for p in dumps[0].iterdir()) == [
        "kdump-outcome.txt", "kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(dumps[0] / "vmcore", tmp_path / "dmesg.txt"))
