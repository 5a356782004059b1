"""What the network, nfs and ssh modules put in the capture image, as data.

The modules' hooks.py files are thin: they call these functions with what the build
context holds. The capture scripts' settings are frozen dataclasses (NetworkSettings,
NfsSettings, SshSettings) that the hooks return from `template_vars`; the builder hands them
to the templates as tainted values, so every one of them is printed with `| shq` and no
value from the host or the configuration is ever pasted into script code.

Bonds, bridges and VLANs are rebuilt as the host has them (network/stack.py); a team or
another stacked device on the route is a build error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.image import layout
from mkkdumprd.network import plan as plan_mod
from mkkdumprd.network import ssh_command, stack
from mkkdumprd.network.ipconfig import IpConfig, IpMode
from mkkdumprd.network.nfs_options import NfsMount, capture_mount, parse_export
from mkkdumprd.network.plan import NetworkPlan
from mkkdumprd.network.resolve import resolve_host

PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
GROUP = "root:x:0:\n"


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
class NetworkSettings:
    """What network.sh needs (dracut ip= semantics); "" where a setting does not apply."""

    iparg: str          # the ip= argument, for the console
    mode: str           # static, dhcp or auto6
    iface: str          # the interface to configure: --ip's, or the top of a rebuilt stack
    macs: str           # NICs to wait for, by permanent MAC, space-separated
    family: str         # 4 or 6
    addr: str           # ADDR/PREFIX (static)
    gw: str
    mtu: str
    target: str         # the dump server's address (for `ip route get`)
    # the host's bond/bridge/VLAN stack, bottom up (network/stack.py); () = a plain NIC
    steps: tuple[stack.Step, ...] = ()


def network_settings(p: NetworkPlan) -> tuple[NetworkSettings, list[str]]:
    """(the settings of network.sh, build warnings)."""
    ip = p.ip
    if ip.mode is IpMode.DHCP6:
        raise UsageError(
            "DHCPv6 is not available in the capture image (busybox has no udhcpc6); use a "
            "static --ip [ADDR]::[GW]:PREFIX::IFACE:none or auto6"
        )
    built = stack.rebuild(p.device) if p.device is not None else stack.Rebuild((), (), ())
    macs = [n.mac for n in p.nics if n.mac]
    # a plain NIC is found by its MAC; the top of a rebuilt stack and --ip's interface by name
    iface = (ip.iface or "") if built.steps or not macs else ""
    settings = NetworkSettings(
        iparg=ip.to_dracut(),
        mode="static" if ip.is_static else ip.mode.value,
        iface=iface,
        macs=" ".join(macs),
        family=str(ip.family),
        addr=ip.cidr,
        gw="" if ip.gateway is None else str(ip.gateway),
        mtu="" if ip.mtu is None else str(ip.mtu),
        target=str(p.target.address),
        steps=built.steps,
    )
    return settings, list(built.warnings)


def nic_modules(system: Host, p: NetworkPlan) -> list[str]:
    """Drivers for the NICs of a host-only plan, and bonding/bridge/8021q for its stack."""
    if p.device is None:
        return []
    from mkkdumprd.kmod.discovery import modules_for_netdev

    mods: list[str] = []
    for nic in p.nics:
        mods.extend(sorted(m for m in modules_for_netdev(system, nic.name)
                           if m not in mods))
    mods.extend(m for m in stack.rebuild(p.device).modules if m not in mods)
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


@dataclass(frozen=True)
class NfsSettings:
    """The capture mount of the nfs target."""

    source: str         # ADDRESS:/EXPORT as the kernel mounts it
    server: str         # HOST:/EXPORT as the configuration names it
    fstype: str
    options: str
    versions: str       # NFS versions to try in turn, space-separated ("" = pinned)


def nfs_settings(m: NfsMount, p: NetworkPlan) -> NfsSettings:
    """The server's address resolved at build time goes into the source (the kernel's
    mount needs an address; the image has no resolver for the kernel)."""
    addr = p.target.address
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return NfsSettings(source=f"{host}:{m.export.export}", server=m.export.spec,
                       fstype=m.fstype, options=m.option_string,
                       versions=" ".join(nfs_versions(m)))


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


@dataclass(frozen=True)
class SshSettings:
    """The ssh dump. The remote directory is `<path>/<ip>-<date>`: the path is quoted for
    the remote shell here (remote_prefix), the name is checked and appended by the script,
    which sets the remote "$d" the commands use to the result."""

    argv: tuple[str, ...]   # ssh with its strict options and the destination
    destination: str        # USER@HOST, for messages
    path: str               # the dump path, for messages
    remote_prefix: str      # `path/` quoted for the remote shell
    commands: ssh_command.DumpCommands


def ssh_settings(target: ssh_command.SshTarget, path: str) -> SshSettings:
    argv = ssh_command.ssh_argv(target, layout.SSH_KEY, layout.SSH_KNOWN_HOSTS)
    return SshSettings(argv=tuple(argv), destination=target.destination, path=path,
                       remote_prefix=ssh_command.remote_dir_prefix(path),
                       commands=ssh_command.dump_commands())
