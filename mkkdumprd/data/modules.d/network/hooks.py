"""network: the route to the dump target as the capture kernel's interface settings.

The plan (ctx.network) is worked out once per build by the builder: host-only builds read
the route, address and NIC stack of the machine (ctx.machine); `--ip` (dracut syntax)
replaces that for images built for another machine; without either, the image asks DHCP
on the first network card.
"""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.errors import OperationError
from mkkdumprd.image import layout
from mkkdumprd.image.spec import Entry, data_entry
from mkkdumprd.network import capture
from mkkdumprd.network.plan import NetworkPlan


def _plan(ctx: BuildContext) -> NetworkPlan:
    if ctx.network is None:
        raise OperationError(f"module network is active for a {ctx.target.kind.value} "
                             f"target, which has no capture network")
    return ctx.network


def entries(ctx: BuildContext) -> list[Entry]:
    plan = _plan(ctx)
    resolv = capture.resolv_conf(ctx.machine, plan) if ctx.hostonly else None
    if resolv is None:
        return []
    return [data_entry(layout.RESOLV_CONF, resolv,
                       ctx.reason(f"name servers for {plan.target.host}"))]


def template_vars(ctx: BuildContext) -> capture.NetworkSettings:
    settings, _ = capture.network_settings(_plan(ctx))
    return settings


def kernel_modules(ctx: BuildContext) -> list[str]:
    return capture.nic_modules(ctx.machine, _plan(ctx))


def check(ctx: BuildContext) -> list[str]:
    _, warnings = capture.network_settings(_plan(ctx))
    return warnings
