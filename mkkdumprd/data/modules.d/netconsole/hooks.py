"""netconsole: the log host of kdump.conf's `netconsole HOST:PORT`, resolved at build time
(the capture kernel has no resolver for it), as the netconsole stage's settings.

netconsole is a module on Debian (CONFIG_NETCONSOLE=m, NETCONSOLE_DYNAMIC=y): loaded
without parameters from modules.load it has no target, and the stage adds one through
configfs once the network is up (netpoll refuses a device without an address).
"""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.errors import UsageError
from mkkdumprd.network.netconsole import NetconsoleSettings
from mkkdumprd.network.resolve import resolve_host


def template_vars(ctx: BuildContext) -> NetconsoleSettings:
    value = ctx.config.netconsole or ""
    host, _, port = value.rpartition(":")
    resolved = resolve_host(ctx.machine, host)
    if resolved.address.version != 4:
        raise UsageError(f"netconsole host {host} has no IPv4 address; fix {ctx.config.source}")
    return NetconsoleSettings(host=str(resolved.address), port=port)
