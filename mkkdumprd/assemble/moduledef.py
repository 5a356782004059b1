"""modules.d/NAME/module.toml: what a capture-image module declares, loaded and validated.

A module is data first: the binaries, busybox applets, kernel modules, files and templates it
needs, when it is active and which modules it needs beside it. Anything computed goes in an
optional hooks.py (see assemble/hooks.py). Every mistake in a module.toml is reported with the
file (and the key) so a module author can fix it without reading the loader.

Schema (all keys but `name` and `description` optional):

    name = "raw"                       # must equal the folder name
    description = "one line"
    depends = ["kdump"]                # modules that must be active with this one
    when = "always"                    # or { target = ["raw", ...] } or { config = ["kdump_pre"] }
                                       # (config conditions: config/directives.py, `when`)
                                       # absent: active only when an active module depends on it
    binaries = ["makedumpfile",                       # required, from the view's PATH
                { any = ["vmcore-dmesg"], optional = true }]   # first found of `any`
    busybox_applets = ["dd", "sync"]   # commands the scripts call (busybox applets, or host
                                       # binaries when the view has no busybox)
    kernel_modules = ["ext4"]          # names or aliases; dependencies come automatically
    files = ["/etc/localtime", { src = "/etc/x", dest = "/etc/y", optional = true }]
    dirs = ["/proc"]
    symlinks = [{ path = "/var/run", target = "../run" }]
    devices = [{ path = "/dev/console", type = "char", major = 5, minor = 1, mode = 0o600 }]
    templates = [{ src = "init.sh.j2", dest = "/init", mode = 0o755 }]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mkkdumprd.assemble import shipped_toml
from mkkdumprd.assemble.machine_facts import MACHINE_FACTS
from mkkdumprd.config.directives import WHEN_KEYS
from mkkdumprd.config.model import TargetKind
from mkkdumprd.errors import ShippedDataError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TOP_KEYS = frozenset({
    "name", "description", "depends", "when", "binaries", "busybox_applets", "kernel_modules",
    "files", "dirs", "symlinks", "devices", "templates",
})


class ModuleDefError(ShippedDataError):
    """A modules.d module (module.toml, hooks.py) that does not follow the contract."""


@dataclass(frozen=True)
class BinarySpec:
    """One binary requirement: the first name of `any` found on the view's PATH."""

    any: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class FileSpec:
    """A host file a module.toml copies into the image (`[[files]]`)."""

    src: str
    dest: str
    optional: bool = False


@dataclass(frozen=True)
class TemplateSpec:
    """A jinja2 template a module.toml renders into the image (`[[templates]]`)."""

    src: str
    dest: str
    mode: int = 0o644


@dataclass(frozen=True)
class SymlinkSpec:
    """A symlink a module.toml creates in the image (`[[symlinks]]`)."""

    path: str
    target: str


@dataclass(frozen=True)
class DeviceSpec:
    """A device node a module.toml creates in the image (`[[devices]]`)."""

    path: str
    type: str  # "char" or "block"
    major: int
    minor: int
    mode: int = 0o600


@dataclass(frozen=True)
class When:
    """Activation rule. `always`; or any listed target kind; or any listed config condition;
    or any listed fact of the machine the image is for (MACHINE_FACTS)."""

    always: bool = False
    targets: frozenset[TargetKind] = frozenset()
    config: frozenset[str] = frozenset()
    machine: frozenset[str] = frozenset()

@dataclass(frozen=True)
class ModuleDef:
    """One modules.d module as its module.toml declares it, with its hooks' folder."""

    name: str
    description: str
    directory: Path
    depends: tuple[str, ...] = ()
    when: When = field(default_factory=When)
    binaries: tuple[BinarySpec, ...] = ()
    busybox_applets: tuple[str, ...] = ()
    kernel_modules: tuple[str, ...] = ()
    files: tuple[FileSpec, ...] = ()
    dirs: tuple[str, ...] = ()
    symlinks: tuple[SymlinkSpec, ...] = ()
    devices: tuple[DeviceSpec, ...] = ()
    templates: tuple[TemplateSpec, ...] = ()

    @property
    def source(self) -> Path:
        return self.directory / "module.toml"

    @property
    def hooks_file(self) -> Path | None:
        p = self.directory / "hooks.py"
        return p if p.is_file() else None


class _Checker:
    """Type checks that name the file and the key in their message."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, msg: str) -> ModuleDefError:
        return ModuleDefError(f"{self.path}: {key}: {msg}")

    def string(self, key: str, v: object) -> str:
        if not isinstance(v, str) or not v:
            raise self.fail(key, f"expected a non-empty string, got {v!r}")
        return v

    def abspath(self, key: str, v: object) -> str:
        s = self.string(key, v)
        if not s.startswith("/") or ".." in s.split("/"):
            raise self.fail(key, f"expected an absolute path without '..', got {s!r}")
        return s

    def strings(self, key: str, v: object) -> tuple[str, ...]:
        if not isinstance(v, list):
            raise self.fail(key, f"expected a list of strings, got {v!r}")
        return tuple(self.string(f"{key}[{i}]", x) for i, x in enumerate(v))

    def table(self, key: str, v: object, allowed: Sequence[str],
              required: Sequence[str]) -> Mapping[str, object]:
        if not isinstance(v, dict):
            raise self.fail(key, f"expected a table, got {v!r}")
        unknown = sorted(set(v) - set(allowed))
        if unknown:
            raise self.fail(key, f"unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
        missing = [k for k in required if k not in v]
        if missing:
            raise self.fail(key, f"missing key {missing[0]!r}")
        return v

    def boolean(self, key: str, v: object) -> bool:
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {v!r}")
        return v

    def integer(self, key: str, v: object, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"expected an integer in {lo}..{hi}, got {v!r}")
        return v

    def items(self, key: str, v: object) -> list[object]:
        if not isinstance(v, list):
            raise self.fail(key, f"expected a list, got {v!r}")
        return v


def load_module(directory: Path, *, _save: bool = True) -> ModuleDef:
    """Load and validate modules.d/NAME/module.toml."""
    path = directory / "module.toml"
    try:
        raw = shipped_toml.parse(path, path.read_bytes())
    except FileNotFoundError:
        raise ModuleDefError(f"{directory}: no module.toml in this module folder") from None
    except shipped_toml.InvalidToml as exc:
        raise ModuleDefError(f"{path}: invalid TOML: {exc}") from None
    if _save:
        shipped_toml.save()
    return parse_module(raw, directory, path)


def parse_module(raw: Mapping[str, object], directory: Path, path: Path) -> ModuleDef:
    c = _Checker(path)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise c.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(_TOP_KEYS))})")
    for key in ("name", "description"):
        if key not in raw:
            raise c.fail(key, "missing required key")
    name = c.string("name", raw["name"])
    if not _NAME_RE.match(name):
        raise c.fail("name", f"{name!r} is not a valid module name (a-z, 0-9, '-', '_')")
    if name != directory.name:
        raise c.fail("name", f"{name!r} differs from the folder name {directory.name!r}")
    depends = c.strings("depends", raw.get("depends", []))
    if name in depends:
        raise c.fail("depends", "a module cannot depend on itself")
    return ModuleDef(
        name=name,
        description=c.string("description", raw["description"]),
        directory=directory,
        depends=depends,
        when=_parse_when(c, raw.get("when")),
        binaries=tuple(_parse_binary(c, f"binaries[{i}]", x)
                       for i, x in enumerate(c.items("binaries", raw.get("binaries", [])))),
        busybox_applets=c.strings("busybox_applets", raw.get("busybox_applets", [])),
        kernel_modules=c.strings("kernel_modules", raw.get("kernel_modules", [])),
        files=tuple(_parse_file(c, f"files[{i}]", x)
                    for i, x in enumerate(c.items("files", raw.get("files", [])))),
        dirs=tuple(c.abspath(f"dirs[{i}]", x)
                   for i, x in enumerate(c.items("dirs", raw.get("dirs", [])))),
        symlinks=tuple(_parse_symlink(c, f"symlinks[{i}]", x)
                       for i, x in enumerate(c.items("symlinks", raw.get("symlinks", [])))),
        devices=tuple(_parse_device(c, f"devices[{i}]", x)
                      for i, x in enumerate(c.items("devices", raw.get("devices", [])))),
        templates=tuple(_parse_template(c, directory, f"templates[{i}]", x)
                        for i, x in enumerate(c.items("templates", raw.get("templates", [])))),
    )


def _parse_when(c: _Checker, v: object) -> When:
    if v is None:
        return When()
    if v == "always":
        return When(always=True)
    t = c.table("when", v, ("target", "config", "machine"), ())
    if not t:
        raise c.fail("when", "an empty table never activates the module; omit `when` instead")
    targets: set[TargetKind] = set()
    for i, kind in enumerate(c.strings("when.target", t.get("target", []))):
        try:
            targets.add(TargetKind(kind))
        except ValueError:
            raise c.fail(f"when.target[{i}]", f"unknown target type {kind!r} (known: "
                         f"{', '.join(k.value for k in TargetKind)})") from None
    conf = c.strings("when.config", t.get("config", []))
    for i, key in enumerate(conf):
        if key not in WHEN_KEYS:
            raise c.fail(f"when.config[{i}]", f"unknown condition {key!r} (known: "
                         f"{', '.join(sorted(WHEN_KEYS))})")
    facts = c.strings("when.machine", t.get("machine", []))
    for i, key in enumerate(facts):
        if key not in MACHINE_FACTS:
            raise c.fail(f"when.machine[{i}]", f"unknown condition {key!r} (known: "
                         f"{', '.join(sorted(MACHINE_FACTS))})")
    return When(targets=frozenset(targets), config=frozenset(conf),
                machine=frozenset(facts))


def _parse_binary(c: _Checker, key: str, v: object) -> BinarySpec:
    if isinstance(v, str):
        return BinarySpec(any=(c.string(key, v),))
    t = c.table(key, v, ("any", "optional"), ("any",))
    names = c.strings(f"{key}.any", t["any"])
    if not names:
        raise c.fail(f"{key}.any", "needs at least one binary name")
    return BinarySpec(any=names, optional=c.boolean(f"{key}.optional", t.get("optional", False)))


def _parse_file(c: _Checker, key: str, v: object) -> FileSpec:
    if isinstance(v, str):
        p = c.abspath(key, v)
        return FileSpec(src=p, dest=p)
    t = c.table(key, v, ("src", "dest", "optional"), ("src",))
    src = c.abspath(f"{key}.src", t["src"])
    return FileSpec(src=src, dest=c.abspath(f"{key}.dest", t.get("dest", src)),
                    optional=c.boolean(f"{key}.optional", t.get("optional", False)))


def _parse_symlink(c: _Checker, key: str, v: object) -> SymlinkSpec:
    t = c.table(key, v, ("path", "target"), ("path", "target"))
    return SymlinkSpec(path=c.abspath(f"{key}.path", t["path"]),
                       target=c.string(f"{key}.target", t["target"]))


def _parse_device(c: _Checker, key: str, v: object) -> DeviceSpec:
    t = c.table(key, v, ("path", "type", "major", "minor", "mode"),
                ("path", "type", "major", "minor"))
    kind = c.string(f"{key}.type", t["type"])
    if kind not in ("char", "block"):
        raise c.fail(f"{key}.type", f"expected 'char' or 'block', got {kind!r}")
    return DeviceSpec(
        path=c.abspath(f"{key}.path", t["path"]), type=kind,
        major=c.integer(f"{key}.major", t["major"], 0, 4095),
        minor=c.integer(f"{key}.minor", t["minor"], 0, 0xFFFFF),
        mode=c.integer(f"{key}.mode", t.get("mode", 0o600), 0, 0o7777),
    )


def _parse_template(c: _Checker, directory: Path, key: str, v: object) -> TemplateSpec:
    t = c.table(key, v, ("src", "dest", "mode"), ("src", "dest"))
    src = c.string(f"{key}.src", t["src"])
    if "/" in src:
        raise c.fail(f"{key}.src", f"expected a file name in templates/, got {src!r}")
    return TemplateSpec(src=src, dest=c.abspath(f"{key}.dest", t["dest"]),
                        mode=c.integer(f"{key}.mode", t.get("mode", 0o644), 0, 0o7777))


def load_all(root: Path) -> dict[str, ModuleDef]:
    """Every module under `root` (modules.d), by name."""
    out: dict[str, ModuleDef] = {}
    if not root.is_dir():
        raise ModuleDefError(f"{root}: the modules.d folder does not exist")
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        m = load_module(d, _save=False)
        out[m.name] = m
    shipped_toml.save()
    return out
