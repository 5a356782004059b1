"""fence-kdump: fence-agents' fence_kdump_send and the peers it tells, as the dump starts.

The sender is the host's (Debian: /usr/libexec/fence-agents/fence_kdump_send from
`fence-agents`, bookworm, or `fence-agents-kdump`, trixie and later; Fedora/RHEL:
/usr/libexec/fence_kdump_send from `fence-agents-kdump`). mkkdumprd ships no sender of its
own: the message is 8 bytes over UDP (ClusterLabs/fence-agents agents/kdump/message.h:
u32 magic 0x1B302A40 then u32 version 1, both in the sender's byte order, default port
7410) but busybox has no UDP client, so a missing sender is a build error naming the
package rather than an image that cannot tell anyone.

The peers are resolved here, at build time, through the machine's /etc/hosts (and its
resolver when the build runs on it), as the dump target's host is: the capture image has
no name service, and fence_kdump's listener accepts a message only from the address it
resolved for this node, so a name that resolves differently at dump time would not help.
A peer that is an address of this machine is refused (Fedora's kdumpctl does too).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.image.spec import Entry
from mkkdumprd.network import addresses, resolve, route

_SENDERS = ("/usr/libexec/fence-agents/fence_kdump_send", "/usr/libexec/fence_kdump_send")
_INSTALL_HINT = ("install fence-agents' fence_kdump_send (Debian: `fence-agents` on bookworm, "
                "`fence-agents-kdump` later; Fedora/RHEL: `fence-agents-kdump`)")


@dataclass(frozen=True)
class _FenceSettings:
    sender: str                 # the sender's path (the same in the image)
    args: tuple[str, ...]       # fence_kdump_args, checked (config/fence_kdump.py)
    nodes: tuple[str, ...]      # the peers' addresses
    shown: str                  # the peers as written, for the console
    command: str                # the sender's arguments, for the console


def _sender(ctx: BuildContext) -> PurePosixPath:
    for path in _SENDERS:
        if ctx.sysroot.is_file(path) and ctx.sysroot.is_executable(path):
            return PurePosixPath(path)
    found = ctx.sysroot.which("fence_kdump_send")
    if found is None:
        raise UsageError(f"fence_kdump_nodes in {ctx.config.source} needs fence_kdump_send, "
                         f"which is not in {ctx.sysroot.root} ({', '.join(_SENDERS)} or PATH); "
                         f"{_INSTALL_HINT}")
    return found


def _nodes(ctx: BuildContext) -> tuple[str, ...]:
    out: list[str] = []
    hostname = (ctx.machine.read_optional("/proc/sys/kernel/hostname") or "").strip()
    for node in ctx.config.fence_kdump_nodes:
        if ctx.hostonly and hostname and node.lower() == hostname.lower():
            raise UsageError(f"fence_kdump node {node} is this machine's host name; list only "
                             f"the other cluster nodes in {ctx.config.source}")
        try:
            addr = resolve.resolve_host(ctx.machine, node).address
        except OperationError as exc:
            raise OperationError(f"fence_kdump node {node}: {exc}") from None
        if ctx.hostonly and addresses.is_host_address(ctx.machine, addr):
            raise UsageError(f"fence_kdump node {node} ({addr}) is this machine itself; list "
                             f"only the other cluster nodes in {ctx.config.source}")
        out.append(str(addr))
    return tuple(dict.fromkeys(out))


def check(ctx: BuildContext) -> list[str]:
    """Host-only: a peer the host reaches through another interface than the capture
    network's would not hear the messages (the capture image brings up one interface)."""
    plan = ctx.network
    if not ctx.hostonly or plan is None or plan.ip.iface is None:
        return []
    warnings = []
    for node, addr in zip(ctx.config.fence_kdump_nodes, _nodes(ctx), strict=False):
        try:
            iface = route.route_get(ctx.machine, ipaddress.ip_address(addr)).iface
        except OperationError:
            continue
        if iface != plan.ip.iface:
            warnings.append(f"fence_kdump node {node} is reached through {iface}, but the "
                            f"capture image brings up only {plan.ip.iface}; its messages may "
                            "not arrive")
    return warnings


def entries(ctx: BuildContext) -> list[Entry]:
    return binary_entries([_sender(ctx)], ctx.sysroot,
                          ctx.reason(f"fence_kdump_nodes from {ctx.config.source}"),
                          machine=ctx.arch)


def template_vars(ctx: BuildContext) -> _FenceSettings:
    nodes = _nodes(ctx)
    args = ctx.config.fence_kdump_args
    return _FenceSettings(sender=str(_sender(ctx)), args=args, nodes=nodes,
                         shown=" ".join(ctx.config.fence_kdump_nodes),
                         command=" ".join((*args, *nodes)))
