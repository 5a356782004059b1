"""The host's device stack above its NICs, as the steps that rebuild it in the capture kernel.

A route may leave through a VLAN on an active-backup bond of two NICs, or a bridge over a
bond: the capture kernel gets the same stack, built by the capture script
(net-lib.sh.j2) with `ip` and sysfs, one step per line:

* the NICs are found by their permanent MAC (capture kernels have no udev names) and
  renamed to the names they have on the host, so a bond's `primary`, a VLAN's parent and
  the `ip=` interface mean the same devices as on the host;
* then each upper device, bottom up: a bond with the host's mode and options
  (interfaces.bond_options) and its ports, a bridge with its ports (STP as the host runs
  it), a VLAN on its parent; each with the host's MAC and MTU.

Devices the image cannot rebuild are a build error naming them: a team (it needs teamd),
macvlan and other stacked devices. A bridge port with no NIC below it (a VM's tap) is left
out with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

from mkkdumprd.errors import OperationError
from mkkdumprd.network.interfaces import DevKind, NetDevice

DEFAULT_MTU = 1500

# Each step's operation and the number of its arguments; the capture script has one
# function per operation (net-lib.sh.j2: kdump_net_step_<op>).
OPS = {
    "nic": 2,           # MAC NAME: the NIC with this permanent MAC gets the host's name
    "bond": 3,          # NAME MAC MODE: create the bond (down), its MAC and mode
    "bond_opt": 3,      # NAME OPTION VALUE: /sys/class/net/NAME/bonding/OPTION
    "bond_port": 2,     # BOND PORT
    "bridge": 2,        # NAME MAC
    "bridge_opt": 3,    # NAME OPTION VALUE: /sys/class/net/NAME/bridge/OPTION
    "bridge_port": 2,   # BRIDGE PORT
    "vlan": 4,          # NAME PARENT VID MAC
    "mtu": 2,           # NAME MTU
    "up": 1,            # NAME
}

MODULES = {DevKind.BOND: "bonding", DevKind.BRIDGE: "bridge", DevKind.VLAN: "8021q"}


@dataclass(frozen=True)
class Step:
    op: str
    args: tuple[str, ...]

    def __post_init__(self) -> None:
        if OPS.get(self.op) != len(self.args):
            raise ValueError(f"step {self.op} {self.args}: not an operation of OPS")


@dataclass(frozen=True)
class Rebuild:
    """What the capture kernel builds: nothing for a plain NIC (the script configures it
    directly), else the steps; the kernel modules they need; warnings for the build."""

    steps: tuple[Step, ...]
    modules: tuple[str, ...]
    warnings: tuple[str, ...]


def _refuse(dev: NetDevice, top: NetDevice) -> OperationError:
    lowers = ", ".join(low.name for low in dev.lowers)
    return OperationError(
        f"the route to the dump target leaves through {top.name}, which runs on {dev.name}: "
        f"a team or another stacked device (over {lowers}) that the capture image cannot "
        f"rebuild; make it a bond, or give the capture network with --ip"
    )


def _has_nic(dev: NetDevice) -> bool:
    return bool(dev.physical())


def rebuild(top: NetDevice) -> Rebuild:
    """The steps that build `top` and everything below it, bottom up."""
    if top.kind is DevKind.PHYSICAL:
        return Rebuild((), (), ())
    steps: list[Step] = []
    modules: list[str] = []
    warnings: list[str] = []
    done: set[str] = set()

    def mtu(dev: NetDevice) -> None:
        if dev.mtu is not None and dev.mtu != DEFAULT_MTU:
            steps.append(Step("mtu", (dev.name, str(dev.mtu))))

    def build(dev: NetDevice) -> None:
        if dev.name in done:
            return
        done.add(dev.name)
        if dev.kind is DevKind.PHYSICAL:
            steps.append(Step("nic", (dev.mac, dev.name)))
            mtu(dev)
            return
        if dev.kind in (DevKind.STACKED, DevKind.VIRTUAL):
            raise _refuse(dev, top)
        lowers = [low for low in dev.lowers if _has_nic(low)]
        for low in dev.lowers:
            if not _has_nic(low):
                warnings.append(f"{dev.kind.value} {dev.name}: port {low.name} has no "
                                f"network card below it and is left out of the capture "
                                f"kernel's {dev.name}")
        if not lowers:
            raise OperationError(f"{dev.kind.value} {dev.name} has no port with a network "
                                 f"card below it; give the capture network with --ip")
        for low in lowers:
            build(low)
        module = MODULES[dev.kind]
        if module not in modules:
            modules.append(module)
        if dev.kind is DevKind.BOND:
            opts = [o.split("=", 1) for o in dev.bond_options]
            mode = next((v for k, v in opts if k == "mode"), "balance-rr")
            steps.append(Step("bond", (dev.name, dev.mac, mode)))
            late = []
            for k, v in opts:
                if k == "mode":
                    continue
                if k == "primary":     # names a port: written once the ports are in
                    late.append(Step("bond_opt", (dev.name, k, v)))
                elif k == "arp_ip_target":
                    steps.extend(Step("bond_opt", (dev.name, k, f"+{a}")) for a in v.split())
                else:
                    steps.append(Step("bond_opt", (dev.name, k, v)))
            steps.extend(Step("bond_port", (dev.name, low.name)) for low in lowers)
            steps.extend(late)
        elif dev.kind is DevKind.BRIDGE:
            steps.append(Step("bridge", (dev.name, dev.mac)))
            steps.extend(Step("bridge_opt", (dev.name, *o.split("=", 1)))
                         for o in dev.bridge_options)
            steps.extend(Step("bridge_port", (dev.name, low.name)) for low in lowers)
        else:
            parent = lowers[0]
            if not dev.vlan_id:
                raise OperationError(f"VLAN {dev.name} is not in /proc/net/vlan/config, so "
                                     f"its VLAN id is unknown; give the capture network "
                                     f"with --ip")
            steps.append(Step("vlan", (dev.name, parent.name, str(dev.vlan_id),
                                       "" if dev.mac == parent.mac else dev.mac)))
        mtu(dev)
        steps.append(Step("up", (dev.name,)))

    build(top)
    return Rebuild(tuple(steps), tuple(modules), tuple(warnings))
