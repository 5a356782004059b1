"""Hardware watchdogs the first kernel leaves running, which would reset the machine in the
middle of a dump.

A watchdog that userspace (systemd, watchdog(8)) keeps fed in the first kernel goes on
counting after the crash: nothing feeds it while the capture kernel boots and dumps, so a
dump longer than its timeout ends in a reset. As Fedora's kdump does, the capture image
gets the driver of every running watchdog and feeds it (modules.d/watchdog).

Read from /sys/class/watchdog/watchdogN/: `state` ("active" while userspace holds it open
and it runs; the attribute exists with CONFIG_WATCHDOG_SYSFS, as in Debian and Fedora),
`identity`, `timeout`, and the device's driver (`device/driver`, its module
`device/driver/module`). Watchdogs without a device (softdog) are software timers of the
crashed kernel and die with it: they are left out.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from mkkdumprd.host import Host

SYS_WATCHDOG = "/sys/class/watchdog"


@dataclass(frozen=True)
class Watchdog:
    name: str           # watchdog0 (the capture kernel may number it differently)
    identity: str       # "i6300ESB timer"
    driver: str         # the device's driver as /sys/bus/*/drivers names it: i6300esb
    module: str | None  # its module, None when built into the kernel
    timeout: int | None


def _read(view: Host, path: str) -> str | None:
    text = view.read_optional(path)
    return text.strip() if text is not None else None


def running(view: Host) -> list[Watchdog]:
    """The machine's running hardware watchdogs, by name."""
    if not view.is_dir(SYS_WATCHDOG):
        return []
    found: list[Watchdog] = []
    for name in view.listdir(SYS_WATCHDOG):
        base = f"{SYS_WATCHDOG}/{name}"
        if _read(view, f"{base}/state") != "active":
            continue
        driver_link = f"{base}/device/driver"
        if not view.exists(driver_link):
            continue
        driver = posixpath.basename(str(view.resolve(driver_link)))
        module = None
        if view.exists(f"{driver_link}/module"):
            module = posixpath.basename(str(view.resolve(f"{driver_link}/module")))
        timeout = _read(view, f"{base}/timeout")
        found.append(Watchdog(name, _read(view, f"{base}/identity") or name, driver, module,
                              int(timeout) if timeout and timeout.isdigit() else None))
    return found


@dataclass(frozen=True)
class WatchdogSettings:
    """What watchdog.sh needs: which devices to feed, by their driver's module (the driver's
    own name for a built-in one; module names are what the capture kernel's sysfs shows the
    same way, driver names may hold spaces: "i6300ESB timer")."""

    drivers: tuple[str, ...]


def settings(dogs: list[Watchdog]) -> WatchdogSettings:
    return WatchdogSettings(tuple(dict.fromkeys(w.module or w.driver for w in dogs)))
