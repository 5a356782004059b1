"""watchdog: the running hardware watchdogs of the machine (mkkdumprd/watchdog.py): their
drivers go into the image, their identities to watchdog.sh, which feeds those devices."""

from __future__ import annotations

from mkkdumprd import watchdog
from mkkdumprd.assemble.hooks import BuildContext


def kernel_modules(ctx: BuildContext) -> list[str]:
    return watchdog.kernel_modules(watchdog.running(ctx.machine))


def template_vars(ctx: BuildContext) -> watchdog.WatchdogSettings:
    return watchdog.settings(watchdog.running(ctx.machine))


def check(ctx: BuildContext) -> list[str]:
    return watchdog.unknown_drivers(watchdog.running(ctx.machine))
