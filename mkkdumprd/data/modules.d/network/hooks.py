"""network: the route to the dump target as the capture kernel's interface settings.

The plan (ctx.network) is worked out once per build by the builder: host-only builds read
the route, address and NIC stack of the machine (ctx.machine); `--ip` (dracut syntax)
replaces that for images built for another machine; without either, the image asks DHCP
on the first network card.
"""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.errors import OperationError
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
    env, _ = capture.network_env(plan)
    why = ctx.reason(f"network settings, ip={plan.ip.to_dracut()}")
    out = [data_entry(capture.NETWORK_ENV, env, why)]
    resolv = capture.resolv_conf(ctx.machine, plan) if ctx.hostonly else None
    if resolv is not None:
        out.append(data_entry("/etc/resolv.conf", resolv,
                              ctx.reason(f"name servers for {plan.target.host}")))
    return out


def kernel_modules(ctx: BuildContext) -> list[str]:
    return capture.nic_modules(ctx.machine, _plan(ctx))


def check(ctx: BuildContext) -> list[str]:
    _, warnings = capture.network_env(_plan(ctx))
    return warnings
