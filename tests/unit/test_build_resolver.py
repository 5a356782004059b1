"""Module activation, dependency order, cycles, unknown dependencies and path clashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.assemble.moduledef import ModuleDef, ModuleDefError, TemplateSpec, When, load_all
from mkkdumprd.assemble.resolver import conditions, order, resolve
from mkkdumprd.config.model import Action, KdumpConfig, Target, TargetKind
from mkkdumprd.resources import data_dir


def _m(name: str, depends: tuple[str, ...] = (), when: When | None = None,
       templates: tuple[TemplateSpec, ...] = ()) -> ModuleDef:
    return ModuleDef(name=name, description="", directory=Path("/m") / name, depends=depends,
                     when=when or When(), templates=templates)


def _cfg(kind: TargetKind = TargetKind.LOCAL, **kw: object) -> KdumpConfig:
    return KdumpConfig(target=Target(kind, device="/dev/vdb"), **kw)  # type: ignore[arg-type]


def test_shipped_modules_for_local_and_raw() -> None:
    mods = load_all(data_dir("modules.d"))
    local = [m.name for m in resolve(mods, _cfg(TargetKind.LOCAL))]
    raw = [m.name for m in resolve(mods, _cfg(TargetKind.RAW))]
    assert "local" in local and "raw" not in local
    assert "raw" in raw and "local" not in raw
    for names in (local, raw):
        for m in names:
            for dep in mods[m].depends:
                assert names.index(dep) < names.index(m), (dep, m)
        assert {"base", "busybox", "kernel-modules", "kdump", "makedumpfile"} <= set(names)


def test_dependencies_first_and_stable() -> None:
    mods = {m.name: m for m in (
        _m("c", ("b",), When(always=True)), _m("b", ("a",)), _m("a"), _m("z", (), When()),
        _m("d", ("a", "c"), When(targets=frozenset({TargetKind.RAW}))),
    )}
    assert [m.name for m in resolve(mods, _cfg())] == ["a", "b", "c"]
    assert [m.name for m in resolve(mods, _cfg(TargetKind.RAW))] == ["a", "b", "c", "d"]


def test_config_conditions_activate() -> None:
    mods = {"pre": _m("pre", when=When(config=frozenset({"kdump_pre"}))),
            "sh": _m("sh", when=When(config=frozenset({"failure_action_shell"})))}
    assert resolve(mods, _cfg()) == []
    cfg = _cfg(kdump_pre="/bin/x", failure_action=Action.SHELL)
    assert conditions(cfg) == {"kdump_pre", "failure_action_shell"}
    assert [m.name for m in resolve(mods, cfg)] == ["pre", "sh"]


def test_machine_facts_activate() -> None:
    mods = {"wd": _m("wd", ("base",), When(machine=frozenset({"watchdog"}))), "base": _m("base")}
    assert resolve(mods, _cfg()) == []
    assert [m.name for m in resolve(mods, _cfg(), frozenset({"watchdog"}))] == ["base", "wd"]
    shipped = load_all(data_dir("modules.d"))
    assert "watchdog" not in [m.name for m in resolve(shipped, _cfg())]
    assert "watchdog" in [m.name for m in resolve(shipped, _cfg(), frozenset({"watchdog"}))]


def test_cycle_is_reported_with_its_path() -> None:
    mods = {m.name: m for m in (_m("a", ("b",), When(always=True)), _m("b", ("c",)),
                                _m("c", ("a",)))}
    with pytest.raises(ModuleDefError, match="dependency cycle a -> b -> c -> a"):
        resolve(mods, _cfg())
    with pytest.raises(ModuleDefError, match="cycle"):
        order(mods, {"b"})


def test_unknown_dependency_names_the_module_file() -> None:
    mods = {"a": _m("a", ("nosuch",), When(always=True))}
    with pytest.raises(ModuleDefError, match=r"/m/a/module.toml: depends: unknown module 'nosuch'"):
        resolve(mods, _cfg())


def test_two_modules_rendering_one_path_clash() -> None:
    t = (TemplateSpec("x.j2", "/lib/kdump/target.sh"),)
    mods = {"a": _m("a", (), When(always=True), t), "b": _m("b", ("a",), When(always=True), t)}
    with pytest.raises(ModuleDefError,
                       match=r"'a' .* and 'b' .* both render /lib/kdump/target\.sh"):
        resolve(mods, _cfg())
