"""Bonds, bridges and VLANs of the host as the steps that rebuild them in the capture kernel
(network/stack.py, read from fake sysfs trees); how the steps reach the script, quoted, is
test_build_templates.py's hostile-value test."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.network import interfaces, stack
from tests.support.fake_network import FakeNet

MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"


@pytest.fixture
def net(tmp_path: Path) -> FakeNet:
    n = FakeNet(tmp_path)
    n.nic("eth0", MAC1, pci="0000:00:03.0")
    n.nic("eth1", MAC2, pci="0000:00:04.0")
    return n


def _steps(net: FakeNet, top: str) -> list[tuple[str, ...]]:
    net.commit()
    return [(s.op, *s.args) for s in stack.rebuild(
        interfaces.describe(Host(net.root), top)).steps]


def test_plain_nic_needs_no_steps(net: FakeNet) -> None:
    net.commit()
    r = stack.rebuild(interfaces.describe(Host(net.root), "eth0"))
    assert (r.steps, r.modules, r.warnings) == ((), (), ())


def test_lacp_bond_keeps_its_rate_and_hash_and_drops_other_modes_options(net: FakeNet) -> None:
    net.bond("bond0", MAC1, ["eth0", "eth1"], mode="802.3ad 4", perm={"eth1": MAC2},
             options={"lacp_rate": "fast 1", "xmit_hash_policy": "layer3+4 1",
                      "ad_select": "stable 0", "primary": "eth1", "updelay": "200",
                      "downdelay": "0", "min_links": "1", "fail_over_mac": "active 1"})
    assert _steps(net, "bond0") == [
        ("nic", MAC1, "eth0"), ("nic", MAC2, "eth1"),
        ("bond", "bond0", MAC1, "802.3ad"),
        # primary and fail_over_mac do not apply to 802.3ad (the kernel refuses them);
        # defaults (ad_select stable, downdelay 0) are not written
        ("bond_opt", "bond0", "miimon", "100"),
        ("bond_opt", "bond0", "updelay", "200"),
        ("bond_opt", "bond0", "lacp_rate", "fast"),
        ("bond_opt", "bond0", "xmit_hash_policy", "layer3+4"),
        ("bond_opt", "bond0", "min_links", "1"),
        ("bond_port", "bond0", "eth0"), ("bond_port", "bond0", "eth1"),
        ("up", "bond0"),
    ]
    dev = interfaces.describe(Host(net.root), "bond0")
    assert interfaces.stack_args(dev) == [
        "bond=bond0:eth0,eth1:mode=802.3ad,miimon=100,updelay=200,lacp_rate=fast,"
        "xmit_hash_policy=layer3+4,min_links=1"]


def test_active_backup_primary_after_its_ports_and_arp_targets_one_by_one(
        net: FakeNet) -> None:
    net.bond("bond1", MAC2, ["eth1", "eth0"], options={
        "primary": "eth0", "fail_over_mac": "active 1", "miimon": "0",
        "arp_interval": "1000", "arp_ip_target": "10.0.0.1 10.0.0.2",
        "arp_validate": "all 3", "updelay": "500"})
    assert _steps(net, "bond1") == [
        ("nic", MAC2, "eth1"), ("nic", MAC1, "eth0"),
        ("bond", "bond1", MAC2, "active-backup"),
        ("bond_opt", "bond1", "fail_over_mac", "active"),   # before any port is in
        ("bond_opt", "bond1", "miimon", "0"),               # updelay: only with miimon
        ("bond_opt", "bond1", "arp_interval", "1000"),
        ("bond_opt", "bond1", "arp_ip_target", "+10.0.0.1"),
        ("bond_opt", "bond1", "arp_ip_target", "+10.0.0.2"),
        ("bond_opt", "bond1", "arp_validate", "all"),
        ("bond_port", "bond1", "eth1"), ("bond_port", "bond1", "eth0"),
        ("bond_opt", "bond1", "primary", "eth0"),
        ("up", "bond1"),
    ]


def test_vlan_on_bridge_over_bond_with_a_tap_port_mtu_and_stp(net: FakeNet) -> None:
    net.bond("bond0", MAC1, ["eth0", "eth1"], perm={"eth1": MAC2})
    (net.root / "sys/devices/virtual/net/bond0/mtu").write_text("9000\n")
    net.virtual("vnet0", "fe:54:00:00:00:09")
    net.bridge("br0", MAC3, ["bond0", "vnet0"], stp=True)
    net.vlan("br0.20", MAC3, "br0", 20)
    net.commit()
    r = stack.rebuild(interfaces.describe(Host(net.root), "br0.20"))
    assert [(s.op, *s.args) for s in r.steps][5:] == [
        ("bond_port", "bond0", "eth1"),
        ("mtu", "bond0", "9000"),
        ("up", "bond0"),
        ("bridge", "br0", MAC3),
        ("bridge_opt", "br0", "stp_state", "1"),
        ("bridge_opt", "br0", "forward_delay", "1500"),
        ("bridge_port", "br0", "bond0"),
        ("up", "br0"),
        ("vlan", "br0.20", "br0", "20", ""),
        ("up", "br0.20"),
    ]
    assert r.modules == ("bonding", "bridge", "8021q")
    assert r.warnings == ("bridge br0: port vnet0 has no network card below it and is left "
                          "out of the capture kernel's br0",)


def test_team_and_unknown_vlan_id_are_build_errors_naming_them(net: FakeNet) -> None:
    team = net.virtual("team0", MAC1)
    (team / "lower_eth0").symlink_to("../eth0")
    net.vlan("eth1.5", MAC2, "eth1", 5, in_proc=False)
    net.commit()
    with pytest.raises(OperationError, match="through team0, which runs on team0: a team"):
        stack.rebuild(interfaces.describe(Host(net.root), "team0"))
    with pytest.raises(OperationError, match=r"VLAN eth1\.5 is not in /proc/net/vlan/config"):
        stack.rebuild(interfaces.describe(Host(net.root), "eth1.5"))


def test_a_vlan_with_its_own_mac_gets_it() -> None:
    nic = interfaces.NetDevice("eth0", interfaces.DevKind.PHYSICAL, MAC1, "e1000e")
    vlan = interfaces.NetDevice("eth0.9", interfaces.DevKind.VLAN, MAC3, "8021q", (nic,),
                                vlan_id=9)
    assert [(s.op, *s.args) for s in stack.rebuild(vlan).steps] == [
        ("nic", MAC1, "eth0"), ("vlan", "eth0.9", "eth0", "9", MAC3), ("up", "eth0.9")]
    with pytest.raises(ValueError):
        stack.Step("vlan", ("too", "few"))
