"""Hardware watchdogs the first kernel leaves running, which would reset the machine in the
middle of a dump.

A watchdog that userspace (systemd, watchdog(8)) keeps fed in the first kernel goes on
counting after the crash: nothing feeds it while the capture kernel boots and dumps, so a
dump longer than its timeout ends in a reset. As Fedora's kdump does, the capture image
gets the driver of every running watchdog and feeds it (modules.d/watchdog).

Read from /sys/class/watchdog/watchdogN/: `state` ("active" while it runs; the attribute
exists with CONFIG_WATCHDOG_SYSFS, as in Debian and Fedora), `identity` (the driver's name
for its hardware, "i6300ESB timer": the capture kernel's watchdog.sh finds the same device
by it, whatever its number there), `timeout`, and the driver: the device's
(`device/driver/module`) when the watchdog has a parent device. Some drivers register
without one (i6300esb in Linux 6.1: /sys/devices/virtual/watchdog/); their module is
found among the modules that use the watchdog core (/sys/module/watchdog/holders/).
The software watchdog (softdog) is a timer of the crashed kernel and dies with it: it is
left out.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from mkkdumprd.host import Host

SYS_WATCHDOG = "/sys/class/watchdog"
CORE_HOLDERS = "/sys/module/watchdog/holders"
SOFTDOG = "softdog"
SOFTDOG_IDENTITY = "Software Watchdog"


@dataclass(frozen=True)
class Watchdog:
    name: str                  # watchdog0 (the capture kernel may number it differently)
    identity: str              # "i6300ESB timer"
    driver: str | None         # the parent device's driver, None without a parent device
    modules: tuple[str, ...]   # its module(s); () when built in or not found
    timeout: int | None


def _read(view: Host, path: str) -> str | None:
    text = view.read_optional(path)
    return text.strip() if text is not None else None


def _base(view: Host, link: str) -> str:
    return posixpath.basename(str(view.resolve(link)))


def _core_users(view: Host) -> tuple[str, ...]:
    """Modules that use the watchdog core (watchdog drivers), but softdog."""
    if not view.is_dir(CORE_HOLDERS):
        return ()
    return tuple(m for m in view.listdir(CORE_HOLDERS) if m != SOFTDOG)


def running(view: Host) -> list[Watchdog]:
    """The machine's running hardware watchdogs, by name."""
    if not view.is_dir(SYS_WATCHDOG):
        return []
    found: list[Watchdog] = []
    for name in view.listdir(SYS_WATCHDOG):
        base = f"{SYS_WATCHDOG}/{name}"
        if _read(view, f"{base}/state") != "active":
            continue
        identity = _read(view, f"{base}/identity") or ""
        driver = None
        modules: tuple[str, ...] = ()
        if view.exists(f"{base}/device/driver"):
            driver = _base(view, f"{base}/device/driver")
            if view.exists(f"{base}/device/driver/module"):
                modules = (_base(view, f"{base}/device/driver/module"),)
        elif identity == SOFTDOG_IDENTITY:
            continue
        else:
            modules = _core_users(view)
        if SOFTDOG in modules:
            continue
        timeout = _read(view, f"{base}/timeout")
        found.append(Watchdog(name, identity, driver, modules,
                              int(timeout) if timeout and timeout.isdigit() else None))
    return found


def kernel_modules(dogs: list[Watchdog]) -> list[str]:
    return list(dict.fromkeys(m for w in dogs for m in w.modules))


def unknown_drivers(dogs: list[Watchdog]) -> list[str]:
    """Warnings for running watchdogs whose driver could not be told (built in, or a
    parentless device with no module using the watchdog core)."""
    return [f"watchdog {w.name} ({w.identity}) runs, but its driver module is unknown: if it "
            f"is not built into the kernel, add it with --add-drivers, or a long dump may be "
            f"reset" for w in dogs if not w.modules and w.driver is None]


@dataclass(frozen=True)
class WatchdogSettings:
    """What watchdog.sh needs: the identities of the devices to feed (the capture kernel
    numbers its watchdogs on its own; the identity is the driver's fixed name for them)."""

    identities: tuple[str, ...]


def settings(dogs: list[Watchdog]) -> WatchdogSettings:
    return WatchdogSettings(tuple(dict.fromkeys(w.identity for w in dogs)))
