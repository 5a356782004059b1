"""What the network, nfs and ssh modules put in the capture image, as data.

The modules' hooks.py files are thin: they call these functions with what the build
context holds. The capture scripts read their settings from small files of shell
assignments (`KEY='value'`, every value quoted with shlex.quote) that these functions
write, so no value from the host or the configuration is ever pasted into script code.

Stacks the capture kernel does not rebuild: bonds and bridges are configured as their
first physical port that has a carrier at dump time, with the upper device's MAC, so the
address and the MAC neighbours know stay the same. VLANs are rebuilt on that port.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.network import plan as plan_mod
from mkkdumprd.network import ssh_command
from mkkdumprd.network.interfaces import DevKind, NetDevice
from mkkdumprd.network.ipconfig import IpConfig, IpMode
from mkkdumprd.network.nfs_options import NfsMount, capture_mount, parse_export
from mkkdumprd.network.plan import NetworkPlan
from mkkdumprd.network.resolve import resolve_host

NETWORK_ENV = "/lib/kdump/network.env"
NFS_ENV = "/lib/kdump/nfs.env"
SSH_ENV = "/lib/kdump/ssh.env"
SSH_KEY = "/root/.ssh/kdump_id"
SSH_KNOWN_HOSTS = "/root/.ssh/known_hosts"
PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
GROUP = "root:x:0:\n"


def shell_env(values: Mapping[str, str]) -> str:
    """`KEY=value` lines, each value one quoted shell word."""
    for key in values:
        if not key.isidentifier() or not key.isupper():
            raise ValueError(f"bad shell variable name {key!r}")
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def target_host(kind: str, server: str) -> str:
    """The host part of an nfs (`HOST:/EXPORT`) or ssh (`USER@HOST`) target."""
    if kind == "nfs":
        return parse_export(server).host
    return ssh_command.parse_target(server).host


def network_plan(system: Host, host: str, *, hostonly: bool,
                 user_ip: str | None = None) -> NetworkPlan:
    """The capture network: --ip when given, else the host's route (host-only builds),
    else DHCP on the first network card (images for another machine)."""
    from mkkdumprd.network.ipconfig import parse_ip

    if user_ip:
        return plan_mod.from_user(system, host, parse_ip(user_ip))
    if hostonly:
        return plan_mod.discover(system, host)
    target = resolve_host(system, host)
    return NetworkPlan(target, IpConfig(IpMode.DHCP if target.address.version == 4
                                        else IpMode.AUTO6), None)


@dataclass(frozen=True)
class CaptureLink:
    """How /init finds and configures the interface."""

    macs: tuple[str, ...]     # NICs to try, by MAC (capture kernels have no udev names)
    lladdr: str               # MAC to set on the NIC ("" = keep its own)
    vlan_id: int | None
    warnings: tuple[str, ...]


def capture_link(device: NetDevice | None) -> CaptureLink:
    if device is None:
        return CaptureLink((), "", None, ())
    warnings: list[str] = []
    top = device
    vlan_id = None
    if top.kind is DevKind.VLAN:
        vlan_id = top.vlan_id
        top = top.lowers[0]
    nics = top.physical()
    if top.kind in (DevKind.BOND, DevKind.BRIDGE, DevKind.STACKED):
        warnings.append(
            f"the capture kernel does not rebuild {top.kind.value} {top.name}: it uses the "
            f"first of {', '.join(n.name for n in nics)} that has a link, with "
            f"{top.name}'s MAC address"
        )
    lladdr = top.mac if top.kind is not DevKind.PHYSICAL else ""
    return CaptureLink(tuple(n.mac for n in nics if n.mac), lladdr, vlan_id, tuple(warnings))


def network_env(p: NetworkPlan) -> tuple[str, list[str]]:
    """(the text of NETWORK_ENV, build warnings)."""
    ip = p.ip
    if ip.mode is IpMode.DHCP6:
        raise UsageError(
            "DHCPv6 is not available in the capture image (busybox has no udhcpc6); use a "
            "static --ip [ADDR]::[GW]:PREFIX::IFACE:none or auto6"
        )
    link = capture_link(p.device)
    env = {
        "KDUMP_NET_IPARG": ip.to_dracut(),
        "KDUMP_NET_MODE": "static" if ip.is_static else ip.mode.value,
        "KDUMP_NET_IFACE": "" if link.macs else (ip.iface or ""),
        "KDUMP_NET_MACS": " ".join(link.macs),
        "KDUMP_NET_LLADDR": link.lladdr,
        "KDUMP_NET_VLAN": "" if link.vlan_id is None else str(link.vlan_id),
        "KDUMP_NET_FAMILY": str(ip.family),
        "KDUMP_NET_ADDR": ip.cidr,
        "KDUMP_NET_GW": "" if ip.gateway is None else str(ip.gateway),
        "KDUMP_NET_MTU": "" if ip.mtu is None else str(ip.mtu),
        "KDUMP_NET_TARGET": str(p.target.address),
        "KDUMP_NET_TARGET_NAME": p.target.host,
    }
    return shell_env(env), list(link.warnings)


def nic_modules(system: Host, p: NetworkPlan) -> list[str]:
    """Drivers for the NICs of a host-only plan (and 8021q when a VLAN is rebuilt)."""
    if p.device is None:
        return []
    from mkkdumprd.kmod.discovery import modules_for_netdev

    # Only the physical ports: bonding and bridge are not rebuilt (see capture_link).
    mods: list[str] = []
    for nic in p.nics:
        mods.extend(sorted(m for m in modules_for_netdev(system, nic.name)
                           if m not in mods))
    if capture_link(p.device).vlan_id is not None:
        mods.append("8021q")
    return mods


def resolv_conf(system: Host, p: NetworkPlan) -> str | None:
    """/etc/resolv.conf for the image when the target is a name (None otherwise)."""
    if not p.needs_resolver:
        return None
    text = system.read_optional("/etc/resolv.conf")
    if not text or "nameserver" not in text:
        raise OperationError(
            f"the dump target {p.target.host} is a name but {system.path('/etc/resolv.conf')} "
            "has no nameserver; write the target as an address instead"
        )
    # systemd-resolved's stub (127.0.0.53) does not exist in the capture kernel
    lines = [ln for ln in text.splitlines()
             if ln.split()[:2] != ["nameserver", "127.0.0.53"]]
    if not any(ln.startswith("nameserver") for ln in lines):
        upstream = system.read_optional("/run/systemd/resolve/resolv.conf") or ""
        lines = [ln for ln in upstream.splitlines() if ln.startswith(("nameserver", "search"))]
        if not lines:
            raise OperationError(
                "/etc/resolv.conf points at systemd-resolved only and its upstream servers "
                f"are unknown; write the dump target {p.target.host} as an address instead"
            )
    return "\n".join(lines) + "\n"


# -- nfs ------------------------------------------------------------------------------------
def nfs_mount(system: Host, server: str, hostonly: bool) -> NfsMount:
    export = parse_export(server)
    if hostonly:
        return capture_mount(system, export)
    return NfsMount(export, "nfs4", ("defaults",), "defaults")


def nfs_versions(m: NfsMount) -> tuple[str, ...]:
    """Versions the capture script tries in turn when the options pin none.

    mount.nfs negotiates (4.2, 4.1, 4.0) in user space; the kernel's own parser, which the
    capture image uses, takes `-t nfs4` alone as 4.0, which v4.1+-only servers refuse.
    """
    pinned = any(o.split("=", 1)[0] in ("vers", "nfsvers", "minorversion") for o in m.options)
    if pinned or m.fstype != "nfs4":
        return ()
    return ("4.2", "4.1", "4.0")


def nfs_env(m: NfsMount, p: NetworkPlan) -> str:
    """The capture mount: the server's address resolved at build time goes into the source
    (the kernel's mount needs an address; the image has no resolver for the kernel)."""
    addr = p.target.address
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return shell_env({
        "KDUMP_NFS_SOURCE": f"{host}:{m.export.export}",
        "KDUMP_NFS_SERVER": m.export.spec,
        "KDUMP_NFS_FSTYPE": m.fstype,
        "KDUMP_NFS_OPTIONS": m.option_string,
        "KDUMP_NFS_VERSIONS": " ".join(nfs_versions(m)),
    })


# -- ssh ------------------------------------------------------------------------------------
def _hashed_match(pattern: str, host: str) -> bool:
    import base64
    import hashlib
    import hmac

    try:
        _, _, salt, digest = pattern.split("|")
        mac = hmac.new(base64.b64decode(salt), host.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(mac, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def known_host_keys(text: str, host: str, port: int) -> list[str]:
    """`TYPE BASE64` keys that a known_hosts text holds for host:port (hashed or plain).

    Wildcard patterns and @cert-authority lines are not used; @revoked keys are removed.
    """
    name = host if port == ssh_command.DEFAULT_PORT else f"[{host}]:{port}"
    keys: list[str] = []
    revoked: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        marker = ""
        if words[0].startswith("@"):
            marker, words = words[0], words[1:]
        if len(words) < 3:
            continue
        pats = words[0].split(",")
        hit = any(_hashed_match(p, name) if p.startswith("|1|") else p == name for p in pats)
        if not hit:
            continue
        key = f"{words[1]} {words[2]}"
        if marker == "@revoked":
            revoked.add(key)
        elif not marker and key not in keys:
            keys.append(key)
    return [k for k in keys if k not in revoked]


def known_hosts_files(system: Host) -> list[str]:
    """Where the host's ssh keeps host keys: the user's file, then the system-wide one."""
    if system.is_live:
        user = str(PurePosixPath(str(Path.home())) / ".ssh/known_hosts")
    else:
        user = "/root/.ssh/known_hosts"
    return [user, "/etc/ssh/ssh_known_hosts"]


def host_key_lines(system: Host, target: ssh_command.SshTarget) -> list[str]:
    files = known_hosts_files(system)
    keys: list[str] = []
    for f in files:
        for k in known_host_keys(system.read_optional(f) or "", target.host, target.port):
            if k not in keys:
                keys.append(k)
    if not keys:
        raise OperationError(
            f"no host key for {target.host} in {' or '.join(files)}, and the capture image "
            f"never trusts an unknown host; run `mkkdumprd propagate` (or "
            f"`ssh -p {target.port} {target.destination} true` and check the fingerprint)"
        )
    return [ssh_command.known_hosts_line(target.host, target.port, k) for k in keys]


def ssh_env(target: ssh_command.SshTarget, ssh_binary: str, path: str) -> str:
    """Settings for the ssh dump. The remote directory is `<path>/<ip>-<date>`: the path
    is quoted for the remote shell here, the suffix (digits, '.', ':', '-') is appended
    by the script."""
    return shell_env({
        "KDUMP_SSH": ssh_binary,
        "KDUMP_SSH_DEST": target.destination,
        "KDUMP_SSH_PORT": str(target.port),
        "KDUMP_SSH_KEY": SSH_KEY,
        "KDUMP_SSH_KNOWN_HOSTS": SSH_KNOWN_HOSTS,
        "KDUMP_SSH_PATH": path,
        "KDUMP_SSH_RPATH": ssh_command.remote_dir_prefix(path),
    })
