"""The small typed API that a module's hooks.py receives.

A hooks.py may define any of:

    def entries(ctx: BuildContext) -> list[Entry]          # computed image entries
    def kernel_modules(ctx: BuildContext) -> list[str]     # computed kernel module names
    def check(ctx: BuildContext) -> list[str]              # build-time warnings; raise
                                                           # MkkdumprdError for errors
    def template_vars(ctx: BuildContext) -> <a frozen dataclass>
        # settings for the scripts: every template sees its fields, tainted, as
        # `<module name with _ for ->.<field>` (the one channel into the capture shell)

Hooks read the machine only through the two Hosts (mkkdumprd/host.py): ctx.sysroot, the
root the image's files come from, and ctx.machine, the machine the image is for (/proc,
/sys, /dev, its keys and routes; its probe_tcp/run, used only when it is live). The
capture network (ctx.network) is worked out once per build, before the hooks run. Hooks
return data and never write to disk. The context is frozen: hooks cannot change what other
modules see.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

from mkkdumprd.assemble.moduledef import ModuleDef, ModuleDefError
from mkkdumprd.assemble.target import ResolvedTarget
from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry

if TYPE_CHECKING:
    from mkkdumprd.kmod.index import ModuleIndex
    from mkkdumprd.network.plan import NetworkPlan

HOOK_NAMES = ("entries", "kernel_modules", "check", "template_vars")


@dataclass(frozen=True)
class BuildContext:
    """What a modules.d hook is given about the build it serves."""

    config: KdumpConfig
    target: ResolvedTarget
    kver: str
    arch: str
    sysroot: Host                           # binaries, libraries, firmware
    machine: Host                           # the machine the image is for
    hostonly: bool
    module: ModuleDef
    active: tuple[str, ...]
    applets: tuple[str, ...]
    index: ModuleIndex | None = None
    rootfs: ResolvedTarget | None = None    # for failure_action dump_to_rootfs (host-only)
    network: NetworkPlan | None = None      # nfs/ssh targets: the capture network, once

    def reason(self, what: str) -> str:
        """A reason string for entries made by this module's hooks."""
        return f"{what} (module {self.module.name})"


@dataclass(frozen=True)
class Hooks:
    """The functions a module's hooks.py offers (each optional)."""

    entries: Callable[[BuildContext], list[Entry]] | None = None
    kernel_modules: Callable[[BuildContext], list[str]] | None = None
    check: Callable[[BuildContext], list[str]] | None = None
    template_vars: Callable[[BuildContext], object] | None = None


def load_hooks(module: ModuleDef) -> Hooks:
    path = module.hooks_file
    if path is None:
        return Hooks()
    py = _import(path, f"mkkdumprd_modules_d.{module.name.replace('-', '_')}")
    unknown = sorted(
        n for n in vars(py)
        if callable(getattr(py, n)) and not n.startswith("_") and n not in HOOK_NAMES
        and getattr(getattr(py, n), "__module__", None) == py.__name__
    )
    if unknown:
        raise ModuleDefError(
            f"{path}: {unknown[0]} is not a hook (known: {', '.join(HOOK_NAMES)}); "
            f"prefix helpers with '_'"
        )
    return Hooks(
        entries=cast("Callable[[BuildContext], list[Entry]] | None", getattr(py, "entries", None)),
        kernel_modules=cast("Callable[[BuildContext], list[str]] | None",
                            getattr(py, "kernel_modules", None)),
        check=cast("Callable[[BuildContext], list[str]] | None", getattr(py, "check", None)),
        template_vars=cast("Callable[[BuildContext], object] | None",
                           getattr(py, "template_vars", None)),
    )


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModuleDefError(f"{path}: cannot be imported as a hooks file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as exc:
        raise ModuleDefError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    return mod
