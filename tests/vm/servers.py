"""Dump-target servers for the VM tests: the product's stand-ins (mkkdumprd/vmtest/servers.py)."""

from __future__ import annotations

from mkkdumprd.vmtest.servers import (
    GANESHA_CONF,
    GUEST_SERVER_IP,
    SSHD_CONFIG,
    NfsServer,
    ServerError,
    SshKeys,
    SshServer,
    free_port,
    port_open,
    require,
)

__all__ = ["GANESHA_CONF", "GUEST_SERVER_IP", "SSHD_CONFIG", "NfsServer", "ServerError",
           "SshKeys", "SshServer", "free_port", "port_open", "require"]
