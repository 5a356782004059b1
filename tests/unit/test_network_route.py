"""Route lookup, interface stacks and source addresses from fake /proc and /sys trees."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.network import addresses, route
from mkkdumprd.network.route import RTF_REJECT, RTF_UP
from tests.support.fake_network import FakeNet, encode_ipv4_hex

A = ipaddress.ip_address


def test_ipv4_hex_roundtrip_matches_this_machines_proc_format() -> None:
    # On this (little-endian) host the kernel prints 192.0.2.1 as 010200C0
    assert encode_ipv4_hex("10.0.2.2") == encode_ipv4_hex(
        route.decode_ipv4_hex(encode_ipv4_hex("10.0.2.2")))
    import sys
    if sys.byteorder == "little":
        assert route.decode_ipv4_hex("010200C0") == A("192.0.2.1")


def test_parses_real_kernel_route_file_shape() -> None:
    text = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    import sys
    if sys.byteorder != "little":
        pytest.skip("sample captured on a little-endian host")
    rs = route.parse_route4(text)
    assert [(str(r.network), str(r.gateway), r.iface) for r in rs] == [
        ("0.0.0.0/0", "192.0.2.1", "eth0"), ("192.0.2.0/24", "None", "eth0")]


@pytest.fixture
def net(tmp_path: Path) -> FakeNet:
    return FakeNet(tmp_path)


def test_longest_prefix_wins_over_default(net: FakeNet) -> None:
    net.route4("eth0", "0.0.0.0/0", "10.0.0.1")
    net.addr4("eth0", "10.0.0.5/24")
    net.route4("eth1", "172.16.0.0/12", "192.168.1.1")
    net.addr4("eth1", "192.168.1.7/24")
    net.commit()
    v = Host(net.root)
    got = route.route_get(v, A("172.20.1.2"))
    assert (got.iface, str(got.gateway)) == ("eth1", "192.168.1.1")
    got = route.route_get(v, A("8.8.8.8"))
    assert (got.iface, str(got.gateway)) == ("eth0", "10.0.0.1")
    on_link = route.route_get(v, A("192.168.1.200"))
    assert (on_link.iface, on_link.gateway) == ("eth1", None)


def test_lowest_metric_breaks_ties(net: FakeNet) -> None:
    net.route4("wlan0", "0.0.0.0/0", "10.1.0.1", metric=600)
    net.route4("eth0", "0.0.0.0/0", "10.0.0.1", metric=100)
    net.commit()
    assert route.route_get(Host(net.root), A("1.2.3.4")).iface == "eth0"


def test_down_and_reject_routes(net: FakeNet) -> None:
    net.route4("eth0", "10.9.0.0/16", "10.0.0.1", flags=0x2)        # not RTF_UP
    net.route4("eth1", "10.9.9.0/24", None, flags=RTF_UP | RTF_REJECT)
    net.commit()
    v = Host(net.root)
    with pytest.raises(OperationError, match=r"no route to the dump target 10\.9\.9\.9"):
        route.route_get(v, A("10.9.9.9"))
    with pytest.raises(OperationError, match="no route"):
        route.route_get(v, A("10.9.1.1"))


def test_missing_proc_file_says_to_use_ip(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="--ip"):
        route.route_get(Host(tmp_path), A("10.0.0.1"))


def test_ipv6_route_and_address(net: FakeNet) -> None:
    net.route6("eth0", "2001:db8:1::/64", None)
    net.route6("eth0", "::/0", "fe80::1", metric=1024)
    net.route6("lo", "::/0", None, metric=0xFFFFFFFF, flags=RTF_UP | RTF_REJECT)
    net.addr6("eth0", "fe80::5054:ff:fe12:3456/64", scope=0x20)
    net.addr6("eth0", "2001:db8:1::99/64", flags=0x00)          # SLAAC (dynamic)
    net.addr6("eth0", "2001:db8:1::42/64", flags=0x80)          # permanent
    net.addr6("eth0", "2001:db8:1::77/64", flags=0x40 | 0x80)   # tentative
    net.commit()
    v = Host(net.root)
    got = route.route_get(v, A("2001:db8:99::1"))
    assert (got.iface, str(got.gateway)) == ("eth0", "fe80::1")
    src = addresses.source_address(v, got)
    assert (str(src.address), src.prefix) == ("2001:db8:1::42", 64)
    onlink = route.route_get(v, A("2001:db8:1::5"))
    assert onlink.gateway is None


def test_ipv6_only_reject_route_is_unreachable(net: FakeNet) -> None:
    net.route6("lo", "::/0", None, metric=0xFFFFFFFF, flags=RTF_UP | RTF_REJECT)
    net.commit()
    with pytest.raises(OperationError, match="no route"):
        route.route_get(Host(net.root), A("2001:db8::1"))


def test_ipv6_local_route_is_this_host(net: FakeNet) -> None:
    net.route6("eth0", "2001:db8:1::42/128", None, metric=0, flags=0x80200001)
    net.route6("eth0", "2001:db8:1::/64", None)
    net.commit()
    with pytest.raises(OperationError, match="this host itself"):
        route.route_get(Host(net.root), A("2001:db8:1::42"))


def test_ipv4_source_address_from_fib_trie_and_connected_route(net: FakeNet) -> None:
    net.addr4("eth0", "10.0.0.5/24")
    net.addr4("eth0", "172.30.4.9/22")       # secondary address on another subnet
    net.addr4("eth1", "192.168.1.7/24")
    net.route4("eth0", "0.0.0.0/0", "172.30.4.1")
    net.commit()
    v = Host(net.root)
    assert {str(a.address) for a in addresses.ipv4_addresses(v, "eth0")} == {
        "10.0.0.5", "172.30.4.9"}
    got = addresses.source_address(v, route.route_get(v, A("8.8.8.8")))
    # the address whose prefix holds the gateway, like the kernel's source selection
    assert (str(got.address), got.prefix) == ("172.30.4.9", 22)
    direct = addresses.source_address(v, route.route_get(v, A("10.0.0.77")))
    assert (str(direct.address), direct.prefix) == ("10.0.0.5", 24)


def test_interface_without_address_is_reported(net: FakeNet) -> None:
    net.route4("eth0", "0.0.0.0/0", "10.0.0.1")
    net.commit()
    v = Host(net.root)
    with pytest.raises(OperationError, match=r"eth0.*has no IPv4 address"):
        addresses.source_address(v, route.route_get(v, A("8.8.8.8")))


def test_fib_trie_of_this_kind_of_host() -> None:
    sample = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
"""
    assert addresses.local_ipv4(sample) == {A("127.0.0.1"), A("192.0.2.2")}
