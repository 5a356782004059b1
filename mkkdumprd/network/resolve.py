"""Turn the dump target's host (a literal address or a name) into one address.

Like Fedora's `getent ahosts`, IPv4 is preferred when a name has both families. Names
are looked up in the view's /etc/hosts first; the resolver of the running system is used
only when the view is the live system (a sysroot's DNS is not ours to ask).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.network.route import IPAddress


@dataclass(frozen=True)
class ResolvedHost:
    host: str            # as the user wrote it (without IPv6 brackets)
    address: IPAddress

    @property
    def is_name(self) -> bool:
        """True when the capture kernel will need a resolver (/etc/resolv.conf) for it."""
        return self.host != str(self.address)


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _prefer_v4(addrs: list[IPAddress]) -> IPAddress | None:
    v4 = [a for a in addrs if a.version == 4]
    return (v4 or addrs or [None])[0]


def from_hosts_file(text: str, name: str) -> IPAddress | None:
    found: list[IPAddress] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and name.lower() in (w.lower() for w in words[1:]):
            addr = literal_address(words[0])
            if addr is not None:
                found.append(addr)
    return _prefer_v4(found)


def resolve_host(view: Host, host: str) -> ResolvedHost:
    bare = host.strip("[]")
    lit = literal_address(bare)
    if lit is not None:
        return ResolvedHost(str(lit), lit)
    addr = from_hosts_file(view.read_optional("/etc/hosts") or "", bare)
    if addr is None and view.is_live:
        addr = _prefer_v4([ipaddress.ip_address(a) for a in view.probe_dns(bare)])
    if addr is None:
        raise OperationError(
            f"cannot resolve the dump target host {bare!r}; check its name, or give its "
            "address instead"
        )
    return ResolvedHost(bare, addr)
