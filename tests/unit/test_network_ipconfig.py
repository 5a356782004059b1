"""dracut `ip=` syntax: parsing a user's --ip and generating it back."""

from __future__ import annotations

import ipaddress

import pytest

from mkkdumprd.errors import UsageError
from mkkdumprd.network.ipconfig import IpConfig, IpMode, dhcp, parse_ip, static

A = ipaddress.ip_address


def test_static_ipv4_from_brief() -> None:
    c = parse_ip("10.0.2.15::10.0.2.2:255.255.255.0::eth0:none")
    assert c == IpConfig(IpMode.STATIC, "eth0", A("10.0.2.15"), 24, A("10.0.2.2"))
    assert (c.cidr, c.netmask, c.family) == ("10.0.2.15/24", "255.255.255.0", 4)
    assert c.to_dracut() == "10.0.2.15::10.0.2.2:255.255.255.0::eth0:none"


@pytest.mark.parametrize("text", [
    "ip=10.0.2.15::10.0.2.2:24:box:eth0:off",
    "10.0.2.15::10.0.2.2:24:box:eth0:static",
])
def test_prefix_netmask_and_mode_synonyms(text: str) -> None:
    c = parse_ip(text)
    assert (c.prefix, c.hostname, c.mode) == (24, "box", IpMode.STATIC)
    assert c.to_dracut() == "10.0.2.15::10.0.2.2:255.255.255.0:box:eth0:none"


def test_ipv6_static_with_mtu_and_mac() -> None:
    text = "[2001:db8::2]::[2001:db8::1]:64::ens3:none:9000:52:54:00:12:34:56"
    c = parse_ip(text)
    assert (c.address, c.prefix, c.gateway) == (A("2001:db8::2"), 64, A("2001:db8::1"))
    assert (c.mtu, c.mac, c.cidr) == (9000, "52:54:00:12:34:56", "2001:db8::2/64")
    assert c.to_dracut() == text


def test_no_gateway() -> None:
    c = parse_ip("192.168.0.9:::255.255.255.0::eth1:none")
    assert c.gateway is None and c.to_dracut() == "192.168.0.9:::255.255.255.0::eth1:none"


@pytest.mark.parametrize(("text", "mode", "iface"), [
    ("dhcp", IpMode.DHCP, None), ("on", IpMode.DHCP, None), ("dhcp6", IpMode.DHCP6, None),
    ("eth0:dhcp", IpMode.DHCP, "eth0"), ("eth0:auto6", IpMode.AUTO6, "eth0"),
    ("::::myhost:eth2:dhcp", IpMode.DHCP, "eth2"),
])
def test_dynamic_forms(text: str, mode: IpMode, iface: str | None) -> None:
    c = parse_ip(text)
    assert (c.mode, c.iface, c.address) == (mode, iface, None)


def test_generated_forms_roundtrip() -> None:
    for c in (static(A("10.1.2.3"), 8, "eth0", A("10.0.0.1"), "h"),
              static(A("fd00::5"), 48, "eth0"), dhcp("eth0"), dhcp("eth0", 6), dhcp(None)):
        assert parse_ip(c.to_dracut()) == c


@pytest.mark.parametrize(("text", "why"), [
    ("10.0.2.15::10.0.2.2:255.255.255.0::eth0:bogus", "unknown mode"),
    ("10.0.2.15::10.0.2.2:255.0.255.0::eth0:none", "not a valid IPv4 netmask"),
    ("10.0.2.15::10.0.2.2:33::eth0:none", "too long"),
    ("::10.0.2.2:24::eth0:none", "client address"),
    ("10.0.2.15::10.0.2.2:24:::none", "interface name"),
    ("10.0.2.15::10.0.2.2:::eth0:none", "netmask"),
    ("10.0.2.15::[fd00::1]:24::eth0:none", "same address family"),
    ("fd00::2", "unknown mode"),
    ("[fd00::2]::[fd00::1]:ffff::::eth0:none", "."),
    ("10.0.2.15::10.0.2.2:24::eth0;reboot:none", "interface name"),
    ("10.0.2.15::10.0.2.2:24:$(id):eth0:none", "hostname"),
    ("10.0.2.15::10.0.2.2:24::eth0:none:abc", "MTU"),
    ("10.0.2.15::10.0.2.2:24::eth0:none:1500:zz", "MAC"),
    ("eth0:none", "static configuration needs"),
    ("[fd00::2::[fd00::1]:64::eth0:none", "."),
])
def test_malformed_is_a_usage_error_naming_the_problem(text: str, why: str) -> None:
    with pytest.raises(UsageError, match="expected dracut syntax") as exc:
        parse_ip(text)
    assert why in str(exc.value)
