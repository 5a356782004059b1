"""The host's own address on the outgoing interface (the `src` of `ip route get`).

IPv4: local addresses come from /proc/net/fib_trie (`/32 host LOCAL` leaves), their device
and netmask from the connected prefix routes in /proc/net/route: an address inside a
connected prefix of device X is X's, with that prefix's length. Addresses configured with
`noprefixroute` have no such route and are not found (use --ip for those hosts).
IPv6: /proc/net/if_inet6 has device, prefix length, scope and flags directly.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.network.route import IPAddress, RouteLookup, routes_for

FIB_TRIE = "/proc/net/fib_trie"
IF_INET6 = "/proc/net/if_inet6"

# if_inet6 flags that make an address unusable or short-lived as a static capture address
IFA_F_SECONDARY = 0x01   # also IFA_F_TEMPORARY (privacy address)
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80
_UNUSABLE6 = IFA_F_DADFAILED | IFA_F_TENTATIVE | IFA_F_DEPRECATED | IFA_F_SECONDARY

_LEAF = re.compile(r"^[\s|+`-]*-- (\d+\.\d+\.\d+\.\d+)\s*$")
_LEAF_INFO = re.compile(r"^\s*/(\d+) (\w+) (\w+)")


@dataclass(frozen=True)
class IfAddress:
    address: IPAddress
    prefix: int
    iface: str


def local_ipv4(fib_trie: str) -> set[ipaddress.IPv4Address]:
    """Every address the IPv4 FIB marks LOCAL (this host's own addresses)."""
    out: set[ipaddress.IPv4Address] = set()
    leaf: ipaddress.IPv4Address | None = None
    for line in fib_trie.splitlines():
        m = _LEAF.match(line)
        if m:
            leaf = ipaddress.IPv4Address(m.group(1))
            continue
        info = _LEAF_INFO.match(line)
        if info and leaf is not None and info.group(1) == "32" and info.group(3) == "LOCAL":
            out.add(leaf)
    return out


def host_ipv4(view: Host) -> set[ipaddress.IPv4Address]:
    text = view.read_optional(FIB_TRIE)
    if text is None:
        raise OperationError(
            f"cannot read {view.path(FIB_TRIE)} to find this host's IPv4 address; "
            "give the capture network with --ip"
        )
    return local_ipv4(text)


def ipv4_addresses(view: Host, iface: str) -> list[IfAddress]:
    """IPv4 addresses of `iface`, each with its connected prefix length."""
    local = sorted(a for a in host_ipv4(view) if not a.is_loopback)
    found: list[IfAddress] = []
    for r in routes_for(view, 4):
        if r.iface != iface or r.gateway is not None or r.network.prefixlen == 0:
            continue
        for a in local:
            if a in r.network and all(f.address != a for f in found):
                found.append(IfAddress(a, r.network.prefixlen, iface))
    return found


def parse_if_inet6(text: str) -> list[tuple[IfAddress, int, int]]:
    """(address, scope, flags) rows of /proc/net/if_inet6."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) != 6:
            continue
        addr = ipaddress.IPv6Address(bytes.fromhex(f[0]))
        rows.append((IfAddress(addr, int(f[2], 16), f[5]), int(f[3], 16), int(f[4], 16)))
    return rows


def ipv6_addresses(view: Host, iface: str) -> list[IfAddress]:
    """Usable global IPv6 addresses of `iface`, permanent (static) ones first."""
    text = view.read_optional(IF_INET6) or ""
    rows = [
        (a, flags) for a, scope, flags in parse_if_inet6(text)
        if a.iface == iface and scope == 0 and not flags & _UNUSABLE6
    ]
    rows.sort(key=lambda row: not row[1] & IFA_F_PERMANENT)
    return [a for a, _ in rows]


def is_host_address(view: Host, addr: IPAddress) -> bool:
    if addr.version == 4:
        return addr in host_ipv4(view)
    text = view.read_optional(IF_INET6) or ""
    return any(a.address == addr for a, _, _ in parse_if_inet6(text))


def source_address(view: Host, lookup: RouteLookup) -> IfAddress:
    """The address the host sends from to reach `lookup.destination`.

    Prefers an address whose prefix holds the next hop (gateway, or the target itself when
    it is on-link), as the kernel's source selection does.
    """
    iface = lookup.iface
    dest = lookup.destination
    cands = ipv4_addresses(view, iface) if dest.version == 4 else ipv6_addresses(view, iface)
    if not cands:
        family = "IPv4" if dest.version == 4 else "global IPv6"
        raise OperationError(
            f"interface {iface}, the route to {dest}, has no {family} address; "
            "give the capture network with --ip"
        )
    hop = lookup.gateway or dest
    for c in cands:
        net = ipaddress.ip_network(f"{c.address}/{c.prefix}", strict=False)
        if hop in net:
            return c
    return cands[0]
