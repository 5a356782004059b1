"""Device stacks (vlan, bond, bridge) down to NICs, and whole-plan discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.network import interfaces, plan
from mkkdumprd.network.interfaces import DevKind
from mkkdumprd.network.ipconfig import IpMode
from tests.support.fake_network import FakeNet


@pytest.fixture
def net(tmp_path: Path) -> FakeNet:
    return FakeNet(tmp_path)


def test_physical_nic_driver_and_mac(net: FakeNet) -> None:
    net.nic("eth0", "52:54:00:12:34:56", driver="e1000e")
    dev = interfaces.describe(Host(net.root), "eth0")
    assert (dev.kind, dev.driver, dev.mac) == (DevKind.PHYSICAL, "e1000e", "52:54:00:12:34:56")
    assert dev.physical() == [dev]
    assert interfaces.stack_args(dev) == []


def test_vlan_on_bond_of_two_nics(net: FakeNet) -> None:
    net.nic("eth0", "52:54:00:00:00:01", driver="ixgbe", pci="0000:00:03.0")
    net.nic("eth1", "52:54:00:00:00:02", driver="igb", pci="0000:00:04.0")
    net.bond("bond0", "52:54:00:00:00:01", ["eth0", "eth1"],
             perm={"eth1": "52:54:00:00:00:02"})
    net.vlan("bond0.100", "52:54:00:00:00:01", "bond0", 100)
    net.commit()
    dev = interfaces.describe(Host(net.root), "bond0.100")
    assert (dev.kind, dev.vlan_id) == (DevKind.VLAN, 100)
    bond = dev.lowers[0]
    assert (bond.kind, bond.bond_options) == (DevKind.BOND, ("mode=active-backup", "miimon=100"))
    nics = dev.physical()
    assert [(n.name, n.driver, n.mac) for n in nics] == [
        ("eth0", "ixgbe", "52:54:00:00:00:01"),
        ("eth1", "igb", "52:54:00:00:00:02"),    # the permanent MAC, not the bond's
    ]
    assert interfaces.stack_args(dev) == [
        "bond=bond0:eth0,eth1:mode=active-backup,miimon=100",
        "vlan=bond0.100:bond0",
    ]


def test_bridge_ports_and_vlan_from_lower_link_only(net: FakeNet) -> None:
    net.nic("enp1s0", "52:54:00:aa:bb:cc", driver="virtio_net")
    net.vlan("enp1s0.7", "52:54:00:aa:bb:cc", "enp1s0", 7, in_proc=False)
    net.bridge("br0", "52:54:00:aa:bb:cc", ["enp1s0.7"])
    net.commit()
    dev = interfaces.describe(Host(net.root), "br0")
    assert dev.kind is DevKind.BRIDGE
    assert [n.name for n in dev.physical()] == ["enp1s0"]
    assert interfaces.stack_args(dev) == ["vlan=enp1s0.7:enp1s0", "bridge=br0:enp1s0.7"]


def test_virtual_device_has_no_nic_and_missing_device_is_reported(net: FakeNet) -> None:
    net.virtual("dummy0", "aa:bb:cc:dd:ee:ff")
    v = Host(net.root)
    assert interfaces.describe(v, "dummy0").physical() == []
    with pytest.raises(OperationError, match="eth9 is not in"):
        interfaces.describe(v, "eth9")


def test_plan_static_ipv4_through_vlan(net: FakeNet) -> None:
    net.nic("eth0", "52:54:00:00:00:01")
    net.vlan("eth0.5", "52:54:00:00:00:01", "eth0", 5)
    net.addr4("eth0.5", "10.5.0.20/16")
    net.route4("eth0.5", "0.0.0.0/0", "10.5.0.1")
    net.write("/etc/hosts", "127.0.0.1 localhost\n192.0.2.10 dumpster.example.org dumpster\n")
    net.commit()
    p = plan.discover(Host(net.root), "dumpster", hostname="kdumphost")
    assert p.ip.to_dracut() == "10.5.0.20::10.5.0.1:255.255.0.0:kdumphost:eth0.5:none"
    assert p.stack == ("vlan=eth0.5:eth0",)
    assert [n.name for n in p.nics] == ["eth0"]
    assert p.needs_resolver and str(p.target.address) == "192.0.2.10"
    # an on-link target keeps the interface's default gateway in ip=, as dracut does
    onlink = plan.discover(Host(net.root), "10.5.3.3")
    assert onlink.ip.to_dracut() == "10.5.0.20::10.5.0.1:255.255.0.0::eth0.5:none"
    dh = plan.discover(Host(net.root), "192.0.2.10", dhcp=True)
    assert dh.ip.to_dracut() == "eth0.5:dhcp" and not dh.needs_resolver


def test_plan_ipv6_static(net: FakeNet) -> None:
    net.nic("eth0", "52:54:00:00:00:01")
    net.route6("eth0", "fd00::/64", None)
    net.route6("eth0", "::/0", "fd00::1", metric=1024)
    net.addr6("eth0", "fd00::2/64")
    net.commit()
    p = plan.discover(Host(net.root), "[fd00:1::9]")
    assert p.ip.to_dracut() == "[fd00::2]::[fd00::1]:64::eth0:none"
    assert plan.discover(Host(net.root), "fd00:1::9", dhcp=True).ip.mode is IpMode.DHCP6


def test_plan_refuses_own_address_and_unresolvable_name(net: FakeNet) -> None:
    net.nic("eth0", "52:54:00:00:00:01")
    net.addr4("eth0", "10.0.0.5/24")
    net.commit()
    v = Host(net.root)
    with pytest.raises(OperationError, match="this host itself"):
        plan.discover(v, "10.0.0.5")
    with pytest.raises(OperationError, match="cannot resolve the dump target host 'nowhere'"):
        plan.discover(v, "nowhere")


def test_plan_refuses_route_without_nic(net: FakeNet) -> None:
    net.virtual("wg0", "00:00:00:00:00:00")
    net.addr4("wg0", "10.8.0.2/24")
    net.commit()
    with pytest.raises(OperationError, match="no physical network card"):
        plan.discover(Host(net.root), "10.8.0.1")
