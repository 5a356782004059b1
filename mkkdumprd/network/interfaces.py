"""Network device stacks: from the interface a route leaves by down to physical NICs.

A route may leave through a VLAN on a bond of two NICs, or a bridge with one port; the
capture kernel needs drivers for the NICs at the bottom and must rebuild the stack above
them. Read from /sys/class/net (bonding/, brif/, lower_* links, device/driver) and
/proc/net/vlan/config.
"""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass, field

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host

SYS_NET = "/sys/class/net"
VLAN_CONFIG = "/proc/net/vlan/config"


class DevKind(enum.Enum):
    PHYSICAL = "physical"
    VLAN = "vlan"
    BOND = "bond"
    BRIDGE = "bridge"
    STACKED = "stacked"   # some other upper device (team, macvlan, ...): has lower_* links
    VIRTUAL = "virtual"   # no lower device and no hardware (dummy, tun, ...)


@dataclass(frozen=True)
class NetDevice:
    name: str
    kind: DevKind
    mac: str
    driver: str | None = None
    lowers: tuple[NetDevice, ...] = ()
    vlan_id: int | None = None
    # bond: the `mode` word and other options as sysfs shows them, for dracut's bond=
    bond_options: tuple[str, ...] = field(default=())

    def physical(self) -> list[NetDevice]:
        """The NICs at the bottom of the stack, in sysfs order, without duplicates."""
        if self.kind is DevKind.PHYSICAL:
            return [self]
        seen: dict[str, NetDevice] = {}
        for low in self.lowers:
            for nic in low.physical():
                seen.setdefault(nic.name, nic)
        return list(seen.values())


def _vlan_table(view: Host) -> dict[str, tuple[int, str]]:
    table: dict[str, tuple[int, str]] = {}
    text = view.read_optional(VLAN_CONFIG) or ""
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            table[parts[0]] = (int(parts[1]), parts[2])
    return table


def _attr(view: Host, ifname: str, name: str) -> str | None:
    text = view.read_optional(f"{SYS_NET}/{ifname}/{name}")
    return text.strip() if text is not None else None


def _mac(view: Host, ifname: str) -> str:
    # A bond enslaves its ports with the bond's MAC; the NIC's own is perm_hwaddr.
    return (
        _attr(view, ifname, "bonding_slave/perm_hwaddr")
        or _attr(view, ifname, "address")
        or ""
    )


def _driver(view: Host, ifname: str) -> str | None:
    link = f"{SYS_NET}/{ifname}/device/driver"
    if not view.exists(link):
        return None
    return posixpath.basename(str(view.resolve(link)))


def _lower_links(view: Host, ifname: str) -> list[str]:
    return [n[len("lower_"):] for n in view.listdir(f"{SYS_NET}/{ifname}") if
            n.startswith("lower_")]


def describe(view: Host, ifname: str, _seen: frozenset[str] = frozenset()) -> NetDevice:
    """The device `ifname` with everything below it."""
    if ifname in _seen:
        raise OperationError(f"network devices below {ifname} form a loop in {SYS_NET}")
    if not view.is_dir(f"{SYS_NET}/{ifname}"):
        raise OperationError(
            f"network interface {ifname} is not in {view.path(SYS_NET)}; "
            "give the capture network with --ip"
        )
    seen = _seen | {ifname}
    mac = _mac(view, ifname)

    def below(names: list[str]) -> tuple[NetDevice, ...]:
        return tuple(describe(view, n, seen) for n in names)

    if view.is_dir(f"{SYS_NET}/{ifname}/bonding"):
        slaves = (_attr(view, ifname, "bonding/slaves") or "").split()
        opts = []
        mode = (_attr(view, ifname, "bonding/mode") or "").split()
        if mode:
            opts.append(f"mode={mode[0]}")
        miimon = _attr(view, ifname, "bonding/miimon")
        if miimon and miimon != "0":
            opts.append(f"miimon={miimon}")
        return NetDevice(ifname, DevKind.BOND, mac, "bonding", below(slaves),
                         bond_options=tuple(opts))
    if view.is_dir(f"{SYS_NET}/{ifname}/bridge"):
        ports = view.listdir(f"{SYS_NET}/{ifname}/brif")
        return NetDevice(ifname, DevKind.BRIDGE, mac, "bridge", below(ports))
    vlans = _vlan_table(view)
    uevent = _attr(view, ifname, "uevent") or ""
    if ifname in vlans or "DEVTYPE=vlan" in uevent.splitlines():
        if ifname in vlans:
            vid, parent = vlans[ifname]
        else:
            lowers = _lower_links(view, ifname)
            if len(lowers) != 1:
                raise OperationError(f"cannot tell which device VLAN {ifname} runs on")
            parent, vid = lowers[0], 0
        return NetDevice(ifname, DevKind.VLAN, mac, "8021q", below([parent]), vlan_id=vid)
    if view.exists(f"{SYS_NET}/{ifname}/device"):
        return NetDevice(ifname, DevKind.PHYSICAL, mac, _driver(view, ifname))
    lowers = _lower_links(view, ifname)
    if lowers:
        return NetDevice(ifname, DevKind.STACKED, mac, None, below(lowers))
    return NetDevice(ifname, DevKind.VIRTUAL, mac)


def stack_args(dev: NetDevice) -> list[str]:
    """dracut-style `vlan=`, `bond=`, `bridge=` arguments that rebuild the stack, bottom up."""
    out: list[str] = []
    for low in dev.lowers:
        out.extend(a for a in stack_args(low) if a not in out)
    ports = ",".join(low.name for low in dev.lowers)
    if dev.kind is DevKind.VLAN:
        out.append(f"vlan={dev.name}:{ports}")
    elif dev.kind is DevKind.BOND:
        opts = ",".join(dev.bond_options)
        out.append(f"bond={dev.name}:{ports}" + (f":{opts}" if opts else ""))
    elif dev.kind is DevKind.BRIDGE:
        out.append(f"bridge={dev.name}:{ports}")
    return out
