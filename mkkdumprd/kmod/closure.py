"""The modules a set of names needs, in load order, as modprobe would load them.

This follows kmod's kmod_module_get_probe_list() step by step, because its quirks decide
the exact set: every hard dependency (from modules.dep, providers first) is preceded by
its softdep `pre:` modules and followed by its `post:` modules; each softdep module is
expanded the same way; a module is expanded at most once, which also ends softdep
cycles (A pre: B, B pre: A gives B, A when A is asked for). Only the first softdep line
matching a module counts. Aliases resolve to every module they match. A module reached
through an alias is skipped when blacklisted, like modprobe does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.errors import UsageError
from mkkdumprd.image.spec import Codec
from mkkdumprd.kmod.index import ModuleIndex
from mkkdumprd.kmod.names import module_suffix, normalize


@dataclass(frozen=True)
class KModule:
    """A module the image carries: its name, file and the firmware it asks for."""

    name: str
    relpath: str            # as in modules.dep, e.g. "kernel/fs/ext4/ext4.ko.xz"
    path: Path              # absolute host path
    codec: Codec            # how the file is compressed (from its suffix)
    firmware: tuple[str, ...]


@dataclass(frozen=True)
class ModuleClosure:
    """The modules an image needs, in load order, and the requested ones built in."""

    kver: str
    modules: tuple[KModule, ...]    # load order, each after what it needs
    builtin: tuple[str, ...]        # requested modules that are built into the kernel


def resolve_modules(index: ModuleIndex, names: Iterable[str], *,
                    omit: Iterable[str] = ()) -> ModuleClosure:
    """The closure of `names` (module names, aliases, modaliases, `symbol:X`).

    Raises ModuleNotFound for a name nothing provides, except for modaliases
    (`bus:...`, as discovery reports them): one that matches nothing belongs to a device
    whose driver is built in or absent, and is skipped. `omit` names modules left out
    wherever they appear (dracut's --omit-drivers); leaving out a hard dependency
    (modules.dep) of a module that is in the closure raises OmittedDependency, since that
    module could not load in the capture kernel.
    """
    walk = _Walk(index, frozenset(normalize(o) for o in omit))
    builtin: dict[str, None] = {}
    for name in names:
        found = index.lookup(name)
        if not found:
            if _is_modalias(name):
                continue
            raise index.not_found(name)
        by_alias = normalize(name) not in found
        for mod in found:
            if mod in walk.omit or (by_alias and index.is_blacklisted(mod)):
                continue
            if mod not in index.modules and mod in index.builtin:
                builtin.setdefault(mod)
            walk.probe(mod)
    if walk.broken:
        raise OmittedDependency(walk.broken)
    modules = tuple(_kmodule(index, name) for name in walk.order)
    return ModuleClosure(index.kver, modules, tuple(builtin))


class OmittedDependency(UsageError):
    """--omit-drivers names a module that a module in the image needs to load."""

    def __init__(self, broken: list[tuple[str, str]]) -> None:
        self.broken = broken
        pairs = "; ".join(f"{mod} needs {dep}" for mod, dep in broken)
        super().__init__(
            f"--omit-drivers leaves out what the image's modules need to load ({pairs}); "
            "keep the dependency, or omit the module that needs it too")


def _is_modalias(name: str) -> bool:
    bus, sep, _ = name.partition(":")
    return bool(sep) and bus != "symbol" and bus.isidentifier()


class _Walk:
    """One modprobe run's state: modules expanded so far and the probe list."""

    def __init__(self, index: ModuleIndex, omit: frozenset[str]) -> None:
        self.index = index
        self.omit = omit
        self.visited: set[str] = set()
        self._order: dict[str, None] = {}
        self.broken: list[tuple[str, str]] = []   # (module, omitted hard dependency)

    @property
    def order(self) -> list[str]:
        """Installed modules in first-seen probe order (built-ins carry no file)."""
        return [n for n in self._order if n in self.index.modules]

    def probe(self, name: str) -> None:
        if name in self.visited or name in self.omit:
            return
        self.visited.add(name)
        for dep in self.index.deps.get(name, ()):
            if dep in self.omit:
                self.broken.append((name, dep))
            else:
                self._with_softdeps(dep)
        self._with_softdeps(name)

    def _with_softdeps(self, name: str) -> None:
        rule = self.index.softdep_of(name)
        for soft in rule.pre if rule else ():
            for mod in self.index.lookup(soft):
                self.probe(mod)
        self._order.setdefault(name)
        for soft in rule.post if rule else ():
            for mod in self.index.lookup(soft):
                self.probe(mod)


def _kmodule(index: ModuleIndex, name: str) -> KModule:
    relpath = index.modules[name]
    found = module_suffix(relpath)
    codec = found[1] if found else Codec.NONE
    return KModule(name, relpath, index.kmoddir / relpath, codec, index.firmware(name))
