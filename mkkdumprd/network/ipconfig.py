"""The capture network in dracut's `ip=` syntax: generate it, parse it, hand it to /init.

Forms (dracut.cmdline(7)):
  ip=<client>:[<peer>]:<gateway>:<netmask>:[<hostname>]:<iface>:{none|off|static|dhcp|dhcp6|auto6}[:[<mtu>][:<mac>]]
  ip=<iface>:{dhcp|dhcp6|auto6|on|any}[:[<mtu>][:<mac>]]
  ip={dhcp|dhcp6|auto6|on|any}
IPv6 addresses are written in brackets and their netmask is a prefix length; an IPv4
netmask may be dotted or a prefix length.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from mkkdumprd.errors import UsageError
from mkkdumprd.network.route import IPAddress

_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9.-]{0,253}$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


class IpMode(enum.Enum):
    STATIC = "none"
    DHCP = "dhcp"
    DHCP6 = "dhcp6"
    AUTO6 = "auto6"


_MODE_WORDS = {
    "none": IpMode.STATIC, "off": IpMode.STATIC, "static": IpMode.STATIC,
    "dhcp": IpMode.DHCP, "on": IpMode.DHCP, "any": IpMode.DHCP,
    "dhcp6": IpMode.DHCP6, "auto6": IpMode.AUTO6,
}


@dataclass(frozen=True)
class IpConfig:
    """One interface's capture-time configuration, as /init needs it."""

    mode: IpMode
    iface: str | None = None
    address: IPAddress | None = None
    prefix: int | None = None
    gateway: IPAddress | None = None
    peer: IPAddress | None = None
    hostname: str = ""
    mtu: int | None = None
    mac: str | None = None

    @property
    def family(self) -> int:
        if self.address is not None:
            return self.address.version
        return 6 if self.mode in (IpMode.DHCP6, IpMode.AUTO6) else 4

    @property
    def is_static(self) -> bool:
        return self.mode is IpMode.STATIC

    @property
    def cidr(self) -> str:
        """`ADDR/PREFIX` as `ip addr add` takes it ("" when not static)."""
        if self.address is None or self.prefix is None:
            return ""
        return f"{self.address}/{self.prefix}"

    @property
    def netmask(self) -> str:
        if self.address is None or self.prefix is None:
            return ""
        if self.address.version == 6:
            return str(self.prefix)
        return str(ipaddress.IPv4Network(f"0.0.0.0/{self.prefix}").netmask)

    def to_dracut(self) -> str:
        """The value of `ip=` (without the `ip=`)."""
        tail = ""
        if self.mtu is not None or self.mac:
            tail = f":{self.mtu if self.mtu is not None else ''}"
            if self.mac:
                tail += f":{self.mac}"
        if not self.is_static:
            if self.iface is None:
                return self.mode.value + tail
            return f"{self.iface}:{self.mode.value}{tail}"
        return ":".join([
            _fmt(self.address), _fmt(self.peer), _fmt(self.gateway), self.netmask,
            self.hostname, self.iface or "", self.mode.value,
        ]) + tail


def _fmt(addr: IPAddress | None) -> str:
    if addr is None:
        return ""
    return f"[{addr}]" if addr.version == 6 else str(addr)


def static(address: IPAddress, prefix: int, iface: str, gateway: IPAddress | None = None,
           hostname: str = "") -> IpConfig:
    return IpConfig(IpMode.STATIC, iface, address, prefix, gateway, hostname=hostname)


def dhcp(iface: str | None, family: int = 4) -> IpConfig:
    return IpConfig(IpMode.DHCP if family == 4 else IpMode.DHCP6, iface)


def _split(text: str) -> list[str]:
    """Split on ':' outside [...] (IPv6 literals)."""
    fields, cur, depth = [], "", 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            fields.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ValueError("unbalanced '['")
    fields.append(cur)
    return fields


def _addr(field: str, what: str) -> IPAddress | None:
    if not field:
        return None
    bracketed = field.startswith("[") and field.endswith("]")
    try:
        addr = ipaddress.ip_address(field[1:-1] if bracketed else field)
    except ValueError:
        raise ValueError(f"{what} {field!r} is not an IP address") from None
    if addr.version == 6 and not bracketed:
        raise ValueError(f"IPv6 {what} must be written in brackets: [{addr}]")
    return addr


def _prefix(mask: str, family: int) -> int:
    if mask.isdigit():
        n = int(mask)
        if n > (32 if family == 4 else 128):
            raise ValueError(f"prefix length {n} is too long")
        return n
    if family == 6:
        raise ValueError(f"an IPv6 netmask is a prefix length, not {mask!r}")
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        raise ValueError(f"netmask {mask!r} is not a valid IPv4 netmask") from None


def _tail(rest: list[str]) -> tuple[int | None, str | None]:
    """`[:mtu][:mac]` after the mode; the MAC has colons of its own."""
    mtu: int | None = None
    if rest:
        if rest[0]:
            if not rest[0].isdigit():
                raise ValueError(f"MTU {rest[0]!r} is not a number")
            mtu = int(rest[0])
        rest = rest[1:]
    mac = ":".join(rest) or None
    if mac is not None and not _MAC.match(mac):
        raise ValueError(f"MAC address {mac!r} is not of the form 52:54:00:12:34:56")
    return mtu, mac


def _mode(word: str) -> IpMode:
    if word not in _MODE_WORDS:
        raise ValueError(f"unknown mode {word!r} (none, dhcp, dhcp6, auto6)")
    return _MODE_WORDS[word]


def _iface(name: str) -> str:
    if not _IFNAME.match(name):
        raise ValueError(f"interface name {name!r} is not valid")
    return name


def _parse(text: str) -> IpConfig:
    fields = _split(text)
    if len(fields) == 1:
        return IpConfig(_mode(fields[0]))
    if len(fields) < 7:
        # <iface>:<mode>[:mtu[:mac]]
        iface, mode = _iface(fields[0]), _mode(fields[1])
        if mode is IpMode.STATIC:
            raise ValueError("a static configuration needs <client>::<gateway>:<netmask>:"
                             "<hostname>:<iface>:none")
        mtu, mac = _tail(fields[2:])
        return IpConfig(mode, iface, mtu=mtu, mac=mac)
    client, peer, gw, mask, hostname, iface, mode_word = fields[:7]
    mode = _mode(mode_word)
    mtu, mac = _tail(fields[7:])
    if not _HOSTNAME.match(hostname):
        raise ValueError(f"hostname {hostname!r} is not valid")
    if mode is not IpMode.STATIC:
        return IpConfig(mode, _iface(iface) if iface else None, mtu=mtu, mac=mac,
                        hostname=hostname)
    address = _addr(client, "client address")
    if address is None:
        raise ValueError("a static configuration needs the client address")
    if not iface:
        raise ValueError("a static configuration needs the interface name")
    if not mask:
        raise ValueError("a static configuration needs the netmask")
    gateway, peer_addr = _addr(gw, "gateway"), _addr(peer, "peer")
    for other in (gateway, peer_addr):
        if other is not None and other.version != address.version:
            raise ValueError(f"{other} is not the same address family as {address}")
    return IpConfig(IpMode.STATIC, _iface(iface), address, _prefix(mask, address.version),
                    gateway, peer_addr, hostname, mtu, mac)


def parse_ip(text: str) -> IpConfig:
    """Parse a user's `--ip` (with or without a leading `ip=`); UsageError when malformed."""
    body = text[3:] if text.startswith("ip=") else text
    try:
        return _parse(body)
    except ValueError as exc:
        raise UsageError(
            f"--ip {text!r}: {exc}; expected dracut syntax such as "
            "10.0.2.15::10.0.2.2:255.255.255.0::eth0:none or eth0:dhcp"
        ) from None
