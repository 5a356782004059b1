"""What `ip route get ADDR` would answer, from /proc/net/route and /proc/net/ipv6_route.

Only the main routing table is visible in these files; hosts that reach the dump target
through policy routing need `--ip`. Selection is the kernel's for a single table: longest
prefix first, then lowest metric.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_REJECT = 0x0200
RTF_LOCAL = 0x80000000

ROUTE4 = "/proc/net/route"
ROUTE6 = "/proc/net/ipv6_route"


@dataclass(frozen=True)
class Route:
    """One row of a routing table."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: IPAddress | None
    iface: str
    metric: int
    flags: int

    @property
    def rejects(self) -> bool:
        return bool(self.flags & RTF_REJECT)


@dataclass(frozen=True)
class RouteLookup:
    """The answer for one destination: the route used and where packets leave."""

    destination: IPAddress
    route: Route

    @property
    def iface(self) -> str:
        return self.route.iface

    @property
    def gateway(self) -> IPAddress | None:
        return self.route.gateway


def decode_ipv4_hex(field: str) -> ipaddress.IPv4Address:
    """/proc/net/route prints the raw __be32 as a native-endian %08X integer."""
    return ipaddress.IPv4Address(int(field, 16).to_bytes(4, sys.byteorder))


def parse_route4(text: str) -> list[Route]:
    routes: list[Route] = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        dest, gw, mask = decode_ipv4_hex(f[1]), decode_ipv4_hex(f[2]), decode_ipv4_hex(f[7])
        flags, metric = int(f[3], 16), int(f[6])
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        routes.append(Route(net, gw if flags & RTF_GATEWAY else None, f[0], metric, flags))
    return routes


def parse_route6(text: str) -> list[Route]:
    routes: list[Route] = []
    for line in text.splitlines():
        f = line.split()
        if len(f) != 10:
            continue
        srclen = int(f[3], 16)
        if srclen:
            # source-specific routes apply only to some sources; `ip route get` without
            # `from` ignores them as well
            continue
        dest = ipaddress.IPv6Address(bytes.fromhex(f[0]))
        nexthop = ipaddress.IPv6Address(bytes.fromhex(f[4]))
        flags = int(f[8], 16)
        net = ipaddress.IPv6Network(f"{dest}/{int(f[1], 16)}", strict=False)
        gw = nexthop if flags & RTF_GATEWAY and not nexthop.is_unspecified else None
        routes.append(Route(net, gw, f[9], int(f[5], 16), flags))
    return routes


def routes_for(view: Host, family: int) -> list[Route]:
    path = ROUTE4 if family == 4 else ROUTE6
    text = view.read_optional(path)
    if text is None:
        raise OperationError(
            f"cannot read {view.path(path)}, so the route to the dump target is unknown; "
            "give the capture network explicitly with --ip"
        )
    return parse_route4(text) if family == 4 else parse_route6(text)


def select_route(routes: list[Route], dest: IPAddress) -> Route | None:
    """Longest matching prefix, then lowest metric; None when nothing matches."""
    best: Route | None = None
    for r in routes:
        if not r.flags & RTF_UP or r.network.version != dest.version or dest not in r.network:
            continue
        if best is None or (r.network.prefixlen, -r.metric) > (
            best.network.prefixlen, -best.metric,
        ):
            best = r
    return best


def route_get(view: Host, dest: IPAddress) -> RouteLookup:
    """The route the host would use to send to `dest`.

    Raises OperationError when `dest` is unreachable, is one of this host's own addresses,
    or only reachable over loopback: none of those can be a remote dump target.
    """
    route = select_route(routes_for(view, dest.version), dest)
    if route is None or route.rejects:
        raise OperationError(
            f"no route to the dump target {dest} on this host; check `ip route get {dest}` "
            "or give the capture network with --ip"
        )
    if route.flags & RTF_LOCAL or route.iface == "lo":
        raise OperationError(
            f"the dump target {dest} is an address of this host itself; "
            "a network dump needs another machine"
        )
    return RouteLookup(dest, route)
