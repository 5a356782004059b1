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
    # bond: `name=value` as sysfs shows them (bond_options()), mode first, in the order the
    # capture script writes them; for dracut's bond= as well
    bond_options: tuple[str, ...] = field(default=())
    # bridge: `name=value` of the bridge's STP settings (bridge_options())
    bridge_options: tuple[str, ...] = field(default=())
    mtu: int | None = None

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


# Bond options the capture kernel gets, in the order they can be written to
# /sys/class/net/BOND/bonding/ (mode and fail_over_mac before any port is enslaved,
# primary after), each with the modes the kernel accepts it in (drivers/net/bonding/
# bond_options.c: unsuppmodes); an option outside its modes is refused by the kernel.
_AB_TLB_ALB = frozenset({"active-backup", "balance-tlb", "balance-alb"})
_ARP_MODES = frozenset({"balance-rr", "active-backup", "balance-xor", "broadcast"})
_BOND_OPTIONS: tuple[tuple[str, frozenset[str] | None], ...] = (
    ("fail_over_mac", frozenset({"active-backup"})),
    ("miimon", None),
    ("updelay", None),
    ("downdelay", None),
    ("arp_interval", _ARP_MODES),
    ("arp_ip_target", _ARP_MODES),
    ("arp_validate", _ARP_MODES),
    ("lacp_rate", frozenset({"802.3ad"})),
    ("ad_select", frozenset({"802.3ad"})),
    ("xmit_hash_policy", frozenset({"balance-xor", "802.3ad", "balance-tlb"})),
    ("min_links", None),
    ("primary_reselect", _AB_TLB_ALB),
    ("primary", _AB_TLB_ALB),
)
# values that are the kernel's defaults: not written (fewer writes, fewer ways to fail)
_BOND_DEFAULTS = {"fail_over_mac": "none", "updelay": "0", "downdelay": "0",
                  "arp_interval": "0", "arp_ip_target": "", "arp_validate": "none",
                  "lacp_rate": "slow", "ad_select": "stable", "xmit_hash_policy": "layer2",
                  "min_links": "0", "primary_reselect": "always", "primary": ""}


def bond_options(view: Host, ifname: str) -> tuple[str, ...]:
    """`name=value` of the bond's settings that differ from the kernel's defaults, `mode`
    first and `miimon` always (the kernel's default for a new bond is 100, not 0).

    sysfs prints most options as `NAME NUMBER` (`active-backup 1`): the name is kept.
    arp_ip_target is a space-separated list of addresses.
    """
    mode = (_attr(view, ifname, "bonding/mode") or "balance-rr").split()[0]
    out = [f"mode={mode}"]
    values: dict[str, str] = {}
    for name, modes in _BOND_OPTIONS:
        raw = _attr(view, ifname, f"bonding/{name}")
        if raw is None or (modes is not None and mode not in modes):
            continue
        value = " ".join(raw.split()) if name == "arp_ip_target" else \
            (raw.split() or [""])[0]
        values[name] = value
        if name in ("updelay", "downdelay") and values.get("miimon", "0") == "0":
            continue
        if name in ("arp_ip_target", "arp_validate") and values.get("arp_interval", "0") == "0":
            continue
        if value != _BOND_DEFAULTS.get(name):
            out.append(f"{name}={value}")
    return tuple(out)


def bridge_options(view: Host, ifname: str) -> tuple[str, ...]:
    """STP on, and its forward delay, when the host's bridge runs STP; else nothing (a
    bridge without STP forwards as soon as a port has a link)."""
    stp = _attr(view, ifname, "bridge/stp_state")
    if stp is None or stp == "0":
        return ()
    out = ["stp_state=1"]
    delay = _attr(view, ifname, "bridge/forward_delay")
    if delay is not None:
        out.append(f"forward_delay={delay}")
    return tuple(out)


def _mtu(view: Host, ifname: str) -> int | None:
    text = _attr(view, ifname, "mtu")
    return int(text) if text is not None and text.isdigit() else None


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
    mtu = _mtu(view, ifname)

    def below(names: list[str]) -> tuple[NetDevice, ...]:
        return tuple(describe(view, n, seen) for n in names)

    if view.is_dir(f"{SYS_NET}/{ifname}/bonding"):
        slaves = (_attr(view, ifname, "bonding/slaves") or "").split()
        return NetDevice(ifname, DevKind.BOND, mac, "bonding", below(slaves),
                         bond_options=bond_options(view, ifname), mtu=mtu)
    if view.is_dir(f"{SYS_NET}/{ifname}/bridge"):
        ports = view.listdir(f"{SYS_NET}/{ifname}/brif")
        return NetDevice(ifname, DevKind.BRIDGE, mac, "bridge", below(ports),
                         bridge_options=bridge_options(view, ifname), mtu=mtu)
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
        return NetDevice(ifname, DevKind.VLAN, mac, "8021q", below([parent]), vlan_id=vid,
                         mtu=mtu)
    if view.exists(f"{SYS_NET}/{ifname}/device"):
        return NetDevice(ifname, DevKind.PHYSICAL, mac, _driver(view, ifname), mtu=mtu)
    lowers = _lower_links(view, ifname)
    if lowers:
        return NetDevice(ifname, DevKind.STACKED, mac, None, below(lowers), mtu=mtu)
    return NetDevice(ifname, DevKind.VIRTUAL, mac, mtu=mtu)


def stack_args(dev: NetDevice) -> list[str]:
    """dracut-style `vlan=`, `bond=`, `bridge=` arguments that rebuild the stack, bottom up."""
    out: list[str] = []
    for low in dev.lowers:
        out.extend(a for a in stack_args(low) if a not in out)
    ports = ",".join(low.name for low in dev.lowers)
    if dev.kind is DevKind.VLAN:
        out.append(f"vlan={dev.name}:{ports}")
    elif dev.kind is DevKind.BOND:
        # dracut separates several arp_ip_target addresses with ';'
        opts = ",".join(o.replace(" ", ";") for o in dev.bond_options)
        out.append(f"bond={dev.name}:{ports}" + (f":{opts}" if opts else ""))
    elif dev.kind is DevKind.BRIDGE:
        out.append(f"bridge={dev.name}:{ports}")
    return out
