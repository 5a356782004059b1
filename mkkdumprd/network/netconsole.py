"""The capture kernel's netconsole (kdump.conf `netconsole HOST[:PORT]`): the settings the
netconsole stage (templates/netconsole.sh.j2, modules.d/netconsole) is given."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetconsoleSettings:
    """What the stage sees as `netconsole.<field>`."""
    host: str             # the log host's IPv4 address (resolved at build time)
    port: str             # its UDP port
