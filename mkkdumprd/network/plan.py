"""Everything the capture image needs to reach one remote dump target, found on the host."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.network import addresses, interfaces, ipconfig, resolve, route
from mkkdumprd.network.interfaces import NetDevice
from mkkdumprd.network.ipconfig import IpConfig
from mkkdumprd.network.resolve import ResolvedHost


@dataclass(frozen=True)
class NetworkPlan:
    target: ResolvedHost
    ip: IpConfig                  # the configuration of the outgoing (top) interface
    device: NetDevice | None      # its stack on the host; None when --ip described another box
    stack: tuple[str, ...] = ()   # dracut vlan=/bond=/bridge= arguments, bottom up

    @property
    def nics(self) -> list[NetDevice]:
        return self.device.physical() if self.device is not None else []

    @property
    def needs_resolver(self) -> bool:
        return self.target.is_name


def discover(view: Host, host: str, *, dhcp: bool = False, hostname: str = "") -> NetworkPlan:
    """The host's way to `host` as a capture-kernel network: route, address, device stack.

    Static by default (the address the host uses now); `dhcp=True` asks for DHCP (DHCPv6
    for an IPv6 target) on the same interface.
    """
    target = resolve.resolve_host(view, host)
    if addresses.is_host_address(view, target.address):
        raise OperationError(
            f"the dump target {host} is an address of this host itself; "
            "a network dump needs another machine"
        )
    lookup = route.route_get(view, target.address)
    device = interfaces.describe(view, lookup.iface)
    if not device.physical():
        raise OperationError(
            f"the route to {host} leaves through {lookup.iface}, which has no physical "
            "network card below it; give the capture network with --ip"
        )
    if dhcp:
        ip = ipconfig.dhcp(lookup.iface, target.address.version)
    else:
        src = addresses.source_address(view, lookup)
        gateway = lookup.gateway or default_gateway(view, lookup.iface, target.address.version)
        ip = ipconfig.static(src.address, src.prefix, lookup.iface, gateway, hostname)
    return NetworkPlan(target, ip, device, tuple(interfaces.stack_args(device)))


def default_gateway(view: Host, iface: str, family: int) -> route.IPAddress | None:
    """The default route's gateway on `iface`, if it has one.

    Kept even when the target is on-link, as dracut's ip= and Fedora's cloned connection
    keep it: name servers and the rest of the network may be behind it.
    """
    default = route.select_route(
        [r for r in route.routes_for(view, family) if r.iface == iface and r.gateway],
        ipaddress.ip_address("0.0.0.0" if family == 4 else "::"),
    )
    return default.gateway if default is not None and default.network.prefixlen == 0 else None


def from_user(view: Host, host: str, ip: IpConfig) -> NetworkPlan:
    """A plan from `--ip` (images for another machine): nothing about the host is read
    except name resolution of the target."""
    target = resolve.resolve_host(view, host)
    if ip.is_static and ip.family != target.address.version:
        raise OperationError(
            f"--ip gives an IPv{ip.family} address but the dump target {host} is "
            f"IPv{target.address.version}"
        )
    return NetworkPlan(target, ip, None)
