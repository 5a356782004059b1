"""nfs: the export's capture-time mount (source, type, options) and its kernel modules."""

from __future__ import annotations

import socket

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.network import capture
from mkkdumprd.network.nfs_options import NfsMount
from mkkdumprd.network.plan import NetworkPlan

NFS_PORT = 2049


def _mount(ctx: BuildContext) -> NfsMount:
    return capture.nfs_mount(ctx.system, ctx.target.server or "", ctx.hostonly)


def _plan(ctx: BuildContext) -> NetworkPlan:
    host = capture.target_host("nfs", ctx.target.server or "")
    return capture.network_plan(ctx.system, host, hostonly=ctx.hostonly,
                                user_ip=getattr(ctx, "ip", None))


def template_vars(ctx: BuildContext) -> capture.NfsSettings:
    return capture.nfs_settings(_mount(ctx), _plan(ctx))


def kernel_modules(ctx: BuildContext) -> list[str]:
    return ["nfsv4"] if _mount(ctx).fstype == "nfs4" else ["nfsv3"]


def check(ctx: BuildContext) -> list[str]:
    if not (ctx.hostonly and ctx.system.root.as_posix() == "/"):
        return []
    plan = _plan(ctx)
    addr = str(plan.target.address)
    try:
        with socket.create_connection((addr, NFS_PORT), timeout=5):
            pass
    except OSError as exc:
        return [f"the NFS server {plan.target.host} does not answer on port {NFS_PORT} "
                f"from this machine ({exc.strerror or exc}); the dump will fail unless it is "
                f"up at crash time: check `ip route get {addr}` and the server"]
    return []
