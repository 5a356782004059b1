"""Fake /proc/net and /sys/class/net trees for network discovery tests.

The file formats are the kernel's (columns as in fs/proc and net/ipv4/fib_trie.c), so the
same parsers read them as they read the live files.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from mkkdumprd.network.route import RTF_GATEWAY, RTF_UP


def encode_ipv4_hex(addr: ipaddress.IPv4Address | str) -> str:
    """/proc/net/route's spelling of an address: the raw __be32 as a native-endian %08X."""
    raw = ipaddress.IPv4Address(addr).packed
    return f"{int.from_bytes(raw, sys.byteorder):08X}"


ROUTE_HEADER = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
)


class FakeNet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.routes4: list[str] = []
        self.routes6: list[str] = []
        self.inet6: list[str] = []
        self.local4: list[str] = []
        self.vlans: list[str] = []

    def _p(self, rel: str) -> Path:
        p = self.root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, rel: str, text: str) -> None:
        self._p(rel).write_text(text)

    def symlink(self, rel: str, target: str) -> None:
        p = self._p(rel)
        os.symlink(target, p)

    # -- devices -----------------------------------------------------------------------
    def nic(self, name: str, mac: str, driver: str = "virtio_net",
            pci: str = "0000:00:03.0") -> None:
        """A PCI NIC the way sysfs shows it: class link → device dir with a driver link."""
        devdir = f"/sys/devices/pci0000:00/{pci}"
        self.write(f"{devdir}/net/{name}/address", mac + "\n")
        self.symlink(f"{devdir}/net/{name}/device", f"../../../{pci}")
        self.symlink(f"{devdir}/driver", f"../../../bus/pci/drivers/{driver}")
        (self.root / f"sys/bus/pci/drivers/{driver}").mkdir(parents=True, exist_ok=True)
        self.symlink(f"/sys/class/net/{name}", f"../../devices/pci0000:00/{pci}/net/{name}")

    def virtio_nic(self, name: str, mac: str, slot: int = 2) -> None:
        """A QEMU virtio-net NIC as a Debian guest's sysfs shows it: PCI device (virtio-pci
        module) → virtioN (virtio_net module) → net/NAME, so kmod discovery finds both."""
        dev = f"sys/devices/pci0000:00/0000:00:{slot:02x}.0"
        vio = f"{dev}/virtio{slot}"
        for rel, target in (
                (f"{dev}/driver", "../../../bus/pci/drivers/virtio-pci"),
                ("sys/bus/pci/drivers/virtio-pci/module", "../../../../module/virtio_pci"),
                (f"{vio}/driver", "../../../../bus/virtio/drivers/virtio_net"),
                ("sys/bus/virtio/drivers/virtio_net/module", "../../../../module/virtio_net"),
                (f"sys/class/net/{name}", f"../../{vio[4:]}/net/{name}"),
                (f"{vio}/net/{name}/device", "../../../virtio" + str(slot))):
            if not (self.root / rel).is_symlink():
                self.symlink(rel, target)
        for mod in ("virtio_pci", "virtio_net"):
            (self.root / "sys/module" / mod).mkdir(parents=True, exist_ok=True)
        self.write(f"{vio}/net/{name}/address", mac + "\n")

    def virtual(self, name: str, mac: str) -> Path:
        d = self.root / f"sys/devices/virtual/net/{name}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "address").write_text(mac + "\n")
        self.symlink(f"/sys/class/net/{name}", f"../../devices/virtual/net/{name}")
        return d

    def bond(self, name: str, mac: str, slaves: list[str], mode: str = "active-backup 1",
             perm: dict[str, str] | None = None, options: dict[str, str] | None = None) -> None:
        """A bond; `options` are further files of bonding/ as sysfs prints them
        (`lacp_rate` = "fast 1")."""
        d = self.virtual(name, mac)
        (d / "bonding").mkdir()
        (d / "bonding/slaves").write_text(" ".join(slaves) + "\n")
        (d / "bonding/mode").write_text(mode + "\n")
        (d / "bonding/miimon").write_text("100\n")
        for opt, value in (options or {}).items():
            (d / f"bonding/{opt}").write_text(value + "\n")
        for s in slaves:
            os.symlink(f"../{s}", d / f"lower_{s}")
            if perm and s in perm:
                real = (self.root / "sys/class/net" / s).resolve()
                (real / "bonding_slave").mkdir(exist_ok=True)
                (real / "bonding_slave/perm_hwaddr").write_text(perm[s] + "\n")
                (real / "address").write_text(mac + "\n")

    def bridge(self, name: str, mac: str, ports: list[str], stp: bool = False) -> None:
        d = self.virtual(name, mac)
        (d / "bridge").mkdir()
        (d / "bridge/stp_state").write_text("1\n" if stp else "0\n")
        (d / "bridge/forward_delay").write_text("1500\n")
        (d / "brif").mkdir()
        for p in ports:
            os.symlink(f"../../{p}/brport", d / f"brif/{p}")

    def vlan(self, name: str, mac: str, parent: str, vid: int,
             in_proc: bool = True) -> None:
        d = self.virtual(name, mac)
        (d / "uevent").write_text(f"DEVTYPE=vlan\nINTERFACE={name}\n")
        os.symlink(f"../{parent}", d / f"lower_{parent}")
        if in_proc:
            self.vlans.append(f"{name:<9}| {vid}  | {parent}")

    # -- addresses and routes ----------------------------------------------------------
    def addr4(self, iface: str, cidr: str, metric: int = 0) -> None:
        """An address plus the connected prefix route the kernel adds for it."""
        itf = ipaddress.IPv4Interface(cidr)
        self.local4.append(str(itf.ip))
        self.route4(iface, str(itf.network), None, metric)

    def route4(self, iface: str, net: str, gw: str | None, metric: int = 0,
               flags: int | None = None) -> None:
        n = ipaddress.IPv4Network(net)
        fl = flags if flags is not None else RTF_UP | (RTF_GATEWAY if gw else 0)
        self.routes4.append(
            f"{iface}\t{encode_ipv4_hex(n.network_address)}\t{encode_ipv4_hex(gw or '0.0.0.0')}"
            f"\t{fl:04X}\t0\t0\t{metric}\t{encode_ipv4_hex(n.netmask)}\t0\t0\t0"
        )

    def addr6(self, iface: str, cidr: str, scope: int = 0, flags: int = 0x80,
              ifindex: int = 2) -> None:
        itf = ipaddress.IPv6Interface(cidr)
        self.inet6.append(
            f"{itf.ip.packed.hex()} {ifindex:02x} {itf.network.prefixlen:02x} {scope:02x} "
            f"{flags:02x} {iface:>8}"
        )

    def route6(self, iface: str, net: str, gw: str | None, metric: int = 256,
               flags: int | None = None) -> None:
        n = ipaddress.IPv6Network(net)
        nh = ipaddress.IPv6Address(gw or "::")
        fl = flags if flags is not None else RTF_UP | (RTF_GATEWAY if gw else 0)
        self.routes6.append(
            f"{n.network_address.packed.hex()} {n.prefixlen:02x} {'0' * 32} 00 "
            f"{nh.packed.hex()} {metric:08x} 00000001 00000000 {fl:08x} {iface:>8}"
        )

    def fib_trie(self) -> str:
        # The shape of /proc/net/fib_trie: a trie dump with leaves and their aliases.
        lines = ["Main:", "  +-- 0.0.0.0/0 3 0 5"]
        for a in ["127.0.0.1", *self.local4]:
            lines += [f"     |-- {a}", "        /32 host LOCAL"]
            net = ipaddress.IPv4Network(f"{a}/24", strict=False)
            lines += [f"     |-- {net.broadcast_address}", "        /32 link BROADCAST"]
        lines += [f"     |-- {net.network_address}", "        /24 link UNICAST"]
        return "\n".join(lines) + "\n"

    def commit(self) -> None:
        self.write("/proc/net/route", ROUTE_HEADER + "".join(r + "\n" for r in self.routes4))
        self.write("/proc/net/ipv6_route", "".join(r + "\n" for r in self.routes6))
        self.write("/proc/net/if_inet6", "".join(r + "\n" for r in self.inet6))
        self.write("/proc/net/fib_trie", self.fib_trie())
        if self.vlans:
            self.write("/proc/net/vlan/config",
                       "VLAN Dev name\t | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n"
                       + "".join(v + "\n" for v in self.vlans))
