"""watchdog: the running hardware watchdogs of the machine (mkkdumprd/watchdog.py): their
drivers go into the image, their driver names to watchdog.sh, which feeds their devices."""

from __future__ import annotations

from mkkdumprd import watchdog
from mkkdumprd.assemble.hooks import BuildContext


def kernel_modules(ctx: BuildContext) -> list[str]:
    return list(dict.fromkeys(w.module for w in watchdog.running(ctx.machine) if w.module))


def template_vars(ctx: BuildContext) -> watchdog.WatchdogSettings:
    return watchdog.settings(watchdog.running(ctx.machine))
