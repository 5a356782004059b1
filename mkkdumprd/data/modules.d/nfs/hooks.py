"""nfs: the export's capture-time mount (source, type, options) and its kernel modules."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.errors import OperationError
from mkkdumprd.network import capture
from mkkdumprd.network.nfs_options import NfsMount
from mkkdumprd.network.plan import NetworkPlan

NFS_PORT = 2049


def _mount(ctx: BuildContext) -> NfsMount:
    return capture.nfs_mount(ctx.machine, ctx.target.server or "", ctx.hostonly)


def _plan(ctx: BuildContext) -> NetworkPlan:
    if ctx.network is None:
        raise OperationError("module nfs is active without an nfs target")
    return ctx.network


def template_vars(ctx: BuildContext) -> capture.NfsSettings:
    return capture.nfs_settings(_mount(ctx), _plan(ctx))


def kernel_modules(ctx: BuildContext) -> list[str]:
    return ["nfsv4"] if _mount(ctx).fstype == "nfs4" else ["nfsv3"]


def check(ctx: BuildContext) -> list[str]:
    """Host-only builds on the live machine try the server the capture kernel will mount."""
    if not (ctx.hostonly and ctx.machine.is_live):
        return []
    plan = _plan(ctx)
    addr = str(plan.target.address)
    why = ctx.machine.probe_tcp(addr, NFS_PORT, 5.0)
    if why is not None:
        return [f"the NFS server {plan.target.host} does not answer on port {NFS_PORT} "
                f"from this machine ({why}); the dump will fail unless it is up at crash "
                f"time: check `ip route get {addr}` and the server"]
    return []
