"""Which modules.d entries a build uses, and in which order.

A module is active when its `when` matches the configuration (a target kind: any of the
dump targets), or when an active module
depends on it. The result is ordered so that every module comes after its dependencies
(ties broken by name, so the order is stable). A cycle or an unknown dependency is an error
naming the modules involved. Two active modules that render a template to the same path
are an error here already, before anything is built (other clashes surface when the
ImageSpec is assembled, with both reasons).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from mkkdumprd.assemble.moduledef import ModuleDef, ModuleDefError, When
from mkkdumprd.config.directives import conditions
from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.errors import UsageError
from mkkdumprd.image import layout


def _matches(when: When, config: KdumpConfig, conds: frozenset[str],
             facts: frozenset[str]) -> bool:
    return (when.always or any(t.kind in when.targets for t in config.targets)
            or bool(when.config & conds) or bool(when.machine & facts))


def resolve(modules: Mapping[str, ModuleDef], config: KdumpConfig,
            facts: frozenset[str] = frozenset(),
            extra: Collection[str] = ()) -> list[ModuleDef]:
    """Active modules for `config` and the machine's `facts` (assemble/machine_facts.py),
    plus those named in `extra` (found under the target or asked for with --add),
    dependencies first."""
    conds = conditions(config)
    unknown = sorted(set(extra) - set(modules))
    if unknown:
        raise UsageError(f"unknown module {', '.join(unknown)} (--add; known: "
                         f"{', '.join(sorted(modules))})")
    roots = sorted({*extra, *(n for n, m in modules.items()
                              if _matches(m.when, config, conds, facts))})
    active: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in active:
            continue
        active.add(name)
        for dep in modules[name].depends:
            if dep not in modules:
                raise ModuleDefError(
                    f"{modules[name].source}: depends: unknown module {dep!r} "
                    f"(known: {', '.join(sorted(modules))})"
                )
            stack.append(dep)
    ordered = order(modules, active)
    check_template_clashes(ordered)
    return ordered


def order(modules: Mapping[str, ModuleDef], names: set[str]) -> list[ModuleDef]:
    """Topological order of `names` (dependencies first); a cycle is an error."""
    done: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = placed

    def visit(name: str, path: list[str]) -> None:
        s = state.get(name)
        if s == 2:
            return
        if s == 1:
            cycle = [*path[path.index(name):], name]
            raise ModuleDefError(
                f"modules.d: dependency cycle {' -> '.join(cycle)}; "
                f"remove one of these `depends` entries"
            )
        state[name] = 1
        for dep in sorted(modules[name].depends):
            if dep not in modules:
                raise ModuleDefError(
                    f"{modules[name].source}: depends: unknown module {dep!r}"
                )
            visit(dep, [*path, name])
        state[name] = 2
        done.append(name)

    for name in sorted(names):
        visit(name, [])
    return [modules[n] for n in done]


def check_template_clashes(active: list[ModuleDef]) -> None:
    """A target module's script (layout.TARGET_SH) is rendered once for each target of its
    kind, each to its own path (builder.py), so target modules of other kinds share it."""
    owner: dict[str, ModuleDef] = {}
    for m in active:
        for t in m.templates:
            if t.dest == layout.TARGET_SH and m.when.targets:
                continue
            other = owner.get(t.dest)
            if other is not None:
                raise ModuleDefError(
                    f"modules {other.name!r} ({other.source}) and {m.name!r} ({m.source}) "
                    f"both render {t.dest}; one path has one owner"
                )
            owner[t.dest] = m
