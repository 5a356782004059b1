"""kdumpctl's verbs: start, stop, reload, restart, rebuild (status is `mkkdumprd status`).

start   = check the crashkernel= reservation, build the capture image if it is missing or
          stale (assemble/rebuild_policy.py, IF_STALE), load it. Already loaded: say so and
          change nothing.
stop    = unload.
reload  = unload + load the existing image, no rebuild (after a CPU/memory hotplug).
restart = stop + start; the build and the load plan are done before the unload, so a
          failing build leaves the old crash kernel loaded instead of none.
rebuild = build unconditionally (kdumpctl rebuild; policy ALWAYS); loads nothing.

Every verb holds the service lock (lifecycle/lock.py). The machine is a Host (a fake
root in tests) and its kernel a `live.Kernel`, which only `live.kernel_for` hands out for the
running system. Without one (`--root DIR`, a system that is not running here) the verbs do
everything that reads and writes files under DIR (the freshness check, a build) and only
report the load and unload they would do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mkkdumprd.arch import ArchInfo
from mkkdumprd.assemble.rebuild_policy import Ensured, Overwrite, ensure_image
from mkkdumprd.assemble.request import BuildRequest
from mkkdumprd.config.kdumpconf import load_kdump_conf
from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.crashkernel.fit import record_fit
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.lifecycle import locations
from mkkdumprd.lifecycle.lock import service_lock
from mkkdumprd.loader import load as loader
from mkkdumprd.loader import locate, status
from mkkdumprd.loader.live import Kernel

_FORCE_HINT = "replace it with `mkkdumprd rebuild`"


def _ignore(_: str) -> None:
    return None


@dataclass(frozen=True)
class Service:
    machine: Host                       # the machine: /etc, /boot, /lib/modules, /proc, /sys, /run
    arch: ArchInfo
    kernel: Kernel | None               # None: report loads and unloads, call nothing
    config_path: Path | None = None     # None: /etc/kdump.conf in machine (else defaults)
    kver: str | None = None             # None: the running kernel
    sysroot: Host | None = None         # binaries and libraries (default: machine)
    kmoddir: Path | None = None         # default: machine's /lib/modules/KVER
    hostonly: bool = True
    add_drivers: tuple[str, ...] = ()
    echo: Callable[[str], None] = field(default=_ignore)
    warn: Callable[[str], None] = field(default=_ignore)


@dataclass(frozen=True)
class Outcome:
    """What a verb did, for the CLI and the tests."""

    built: bool = False
    reasons: tuple[str, ...] = ()       # why the image was (re)built
    loaded: dict[str, Any] | None = None
    unloaded: bool = False
    image: PurePosixPath | None = None


def _config(svc: Service) -> KdumpConfig:
    return load_kdump_conf(svc.config_path, default=svc.machine.path(locations.CONFIG))


def _kver(svc: Service) -> str:
    return svc.kver or locate.running_kver(svc.machine)


def _request(svc: Service, config: KdumpConfig, kver: str, image: PurePosixPath) -> BuildRequest:
    return BuildRequest(
        config=config, kver=kver,
        kmoddir=svc.kmoddir or svc.machine.path(f"/lib/modules/{kver}"),
        sysroot=svc.sysroot or svc.machine, machine=svc.machine, arch=svc.arch.name,
        hostonly=svc.hostonly, add_drivers=svc.add_drivers, output=svc.machine.path(image),
    )


def _ensure(svc: Service, req: BuildRequest, overwrite: Overwrite) -> Ensured:
    """The rebuild policy's answer; the build is announced before it starts."""

    def announce(decision: Ensured) -> None:
        svc.echo(f"building {req.output}: {'; '.join(decision.reasons)}")
        assert req.output is not None
        try:
            req.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationError(f"cannot create {req.output.parent}: {exc.strerror}") from None

    ensured = ensure_image(req, overwrite, before_build=announce, force_hint=_FORCE_HINT)
    if ensured.result is not None:
        for w in ensured.result.warnings:
            svc.warn(w)
    return ensured


def _prepare(svc: Service, *, may_build: bool) -> tuple[loader.LoadPlan, Outcome]:
    """Check, build when needed and allowed, and plan the load; nothing is unloaded yet."""
    loader.check_reservation(svc.machine)
    kver = _kver(svc)
    image = locations.capture_image(svc.machine, kver) if may_build else \
        locations.existing_capture_image(svc.machine, kver)
    outcome = Outcome(image=image)
    if may_build:
        ensured = _ensure(svc, _request(svc, _config(svc), kver, image), Overwrite.IF_STALE)
        if ensured.built:
            outcome = Outcome(built=True, reasons=ensured.reasons, image=image)
        else:
            svc.echo(f"{image} is up to date")
    plan = loader.plan_load(svc.machine, svc.arch, kver=kver, initrd=str(image))
    for note in plan.notes:
        svc.warn(note)
    return plan, outcome


def _not_running(svc: Service) -> str:
    return f"--root {svc.machine.root} is not the running system"


def _load(svc: Service, plan: loader.LoadPlan, outcome: Outcome, unloaded: bool) -> Outcome:
    if svc.kernel is None:
        svc.echo(plan.describe(svc.machine))
        svc.echo(f"not loaded: {_not_running(svc)}; kexec_file_load not called")
        return Outcome(built=outcome.built, reasons=outcome.reasons, unloaded=unloaded,
                       image=outcome.image)
    record = loader.execute_load(plan, svc.machine, svc.kernel)
    svc.echo(f"loaded {record['kernel']} with {record['initrd']}")
    fit = record_fit(svc.machine, svc.arch, record)
    if fit is not None and fit.short:
        svc.warn(fit.warning())
    return Outcome(built=outcome.built, reasons=outcome.reasons, loaded=record,
                   unloaded=unloaded, image=outcome.image)


def _unload(svc: Service) -> None:
    was = status.read_status(svc.machine).loaded
    if svc.kernel is None:
        svc.echo(f"not unloaded: {_not_running(svc)}; nothing called")
        return
    loader.unload(svc.machine, svc.arch, svc.kernel)
    svc.echo("crash kernel unloaded" if was else "no crash kernel was loaded")


def start(svc: Service) -> Outcome:
    with service_lock(svc.machine, svc.warn):
        loader.check_reservation(svc.machine)     # before any build: no reservation, no use
        if status.read_status(svc.machine).loaded:
            svc.echo("a crash kernel is already loaded; `mkkdumprd restart` rebuilds if "
                     "needed and reloads it")
            return Outcome()
        plan, outcome = _prepare(svc, may_build=True)
        return _load(svc, plan, outcome, unloaded=False)


def stop(svc: Service) -> Outcome:
    with service_lock(svc.machine, svc.warn):
        _unload(svc)
        return Outcome(unloaded=svc.kernel is not None)


def reload(svc: Service) -> Outcome:
    with service_lock(svc.machine, svc.warn):
        plan, outcome = _prepare(svc, may_build=False)
        _unload(svc)
        return _load(svc, plan, outcome, unloaded=svc.kernel is not None)


def restart(svc: Service) -> Outcome:
    with service_lock(svc.machine, svc.warn):
        plan, outcome = _prepare(svc, may_build=True)
        _unload(svc)
        return _load(svc, plan, outcome, unloaded=svc.kernel is not None)


def rebuild(svc: Service) -> Outcome:
    with service_lock(svc.machine, svc.warn):
        kver = _kver(svc)
        image = locations.capture_image(svc.machine, kver)
        ensured = _ensure(svc, _request(svc, _config(svc), kver, image), Overwrite.ALWAYS)
        return Outcome(built=True, reasons=ensured.reasons, image=image)
