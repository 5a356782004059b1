"""module.toml loading: the shipped modules load, and every schema mistake is reported with
the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.assemble.hooks import load_hooks
from mkkdumprd.assemble.moduledef import BinarySpec, ModuleDefError, load_all, load_module
from mkkdumprd.config.model import TargetKind
from mkkdumprd.resources import data_dir


def _module(tmp_path: Path, text: str, name: str = "demo") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "module.toml").write_text(text)
    return d


def test_shipped_modules_load_with_their_hooks() -> None:
    mods = load_all(data_dir("modules.d"))
    for name in ("base", "busybox", "kernel-modules", "kdump", "makedumpfile", "local", "raw"):
        assert name in mods
        load_hooks(mods[name])
    assert mods["raw"].when.targets == frozenset({TargetKind.RAW})
    assert mods["base"].when.always
    assert mods["makedumpfile"].binaries == (
        BinarySpec(("makedumpfile",)), BinarySpec(("vmcore-dmesg",), optional=True))
    assert {t.dest for t in mods["base"].templates} == {"/init", "/lib/kdump/lib.sh"}


def test_full_schema(tmp_path: Path) -> None:
    d = _module(tmp_path, '''
name = "demo"
description = "all keys"
depends = ["base"]
when = { target = ["local", "raw"], config = ["kdump_pre"] }
binaries = ["a", { any = ["b", "c"] }, { any = ["d"], optional = true }]
busybox_applets = ["dd"]
kernel_modules = ["ext4"]
files = ["/etc/x", { src = "/etc/y", dest = "/etc/z", optional = true }]
dirs = ["/mnt"]
symlinks = [{ path = "/var/run", target = "../run" }]
devices = [{ path = "/dev/null", type = "char", major = 1, minor = 3, mode = 0o666 }]
templates = [{ src = "t.j2", dest = "/t", mode = 0o755 }]
''')
    m = load_module(d)
    assert m.binaries[1] == BinarySpec(("b", "c"))
    assert m.binaries[2].optional
    assert m.files[0].dest == "/etc/x" and m.files[1].dest == "/etc/z" and m.files[1].optional
    assert m.when.config == frozenset({"kdump_pre"})
    assert m.devices[0].mode == 0o666 and m.templates[0].mode == 0o755


@pytest.mark.parametrize("body, message", [
    ('name = "demo"\ndescription = "x"\nbinarys = ["a"]\n', "binarys: unknown key"),
    ('description = "x"\n', "name: missing required key"),
    ('name = "other"\ndescription = "x"\n', "differs from the folder name"),
    ('name = "demo"\ndescription = "x"\nwhen = { target = ["floppy"] }\n',
     "when.target[0]: unknown target type 'floppy'"),
    ('name = "demo"\ndescription = "x"\nwhen = { config = ["nope"] }\n',
     "when.config[0]: unknown condition 'nope'"),
    ('name = "demo"\ndescription = "x"\nwhen = { machine = ["raid"] }\n',
     "when.machine[0]: unknown condition 'raid' (known: watchdog)"),
    ('name = "demo"\ndescription = "x"\nwhen = {}\n', "an empty table never activates"),
    ('name = "demo"\ndescription = "x"\nbinaries = [{ name = "a" }]\n',
     "binaries[0]: unknown key 'name'"),
    ('name = "demo"\ndescription = "x"\nbinaries = [{ any = [] }]\n', "needs at least one"),
    ('name = "demo"\ndescription = "x"\nbinaries = [3]\n', "binaries[0]: expected a table"),
    ('name = "demo"\ndescription = "x"\nfiles = ["etc/x"]\n', "files[0]: expected an absolute"),
    ('name = "demo"\ndescription = "x"\ndirs = ["/a/../b"]\n', "without '..'"),
    ('name = "demo"\ndescription = "x"\ntemplates = [{ src = "a/b.j2", dest = "/x" }]\n',
     "templates[0].src: expected a file name"),
    ('name = "demo"\ndescription = "x"\ntemplates = [{ src = "a.j2" }]\n',
     "templates[0]: missing key 'dest'"),
    ('name = "demo"\ndescription = "x"\ntemplates = [{ src = "a", dest = "/x", mode = "755" }]\n',
     "templates[0].mode: expected an integer"),
    ('name = "demo"\ndescription = "x"\ndevices = [{ path = "/dev/x", type = "pipe", '
     'major = 1, minor = 1 }]\n', "devices[0].type: expected 'char' or 'block'"),
    ('name = "demo"\ndescription = "x"\ndepends = ["demo"]\n', "cannot depend on itself"),
    ('name = "demo"\ndescription = "x"\ndepends = "base"\n', "depends: expected a list"),
    ('name = "demo"\ndescription = \n', "invalid TOML"),
])
def test_schema_errors_name_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    d = _module(tmp_path, body)
    with pytest.raises(ModuleDefError) as exc:
        load_module(d)
    assert str(d / "module.toml") in str(exc.value)
    assert message in str(exc.value)
    assert exc.value.exit_code == 4  # shipped data, not the user's input


def test_folder_without_module_toml(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModuleDefError, match=r"no module\.toml"):
        load_all(tmp_path)


def test_hooks_file_with_unknown_function(tmp_path: Path) -> None:
    d = _module(tmp_path, 'name = "demo"\ndescription = "x"\n')
    (d / "hooks.py").write_text("def entrys(ctx):\n    return []\n")
    with pytest.raises(ModuleDefError, match="entrys is not a hook"):
        load_hooks(load_module(d))


def test_hooks_file_with_syntax_error(tmp_path: Path) -> None:
    d = _module(tmp_path, 'name = "demo"\ndescription = "x"\n')
    (d / "hooks.py").write_text("def entries(ctx:\n")
    with pytest.raises(ModuleDefError, match=r"hooks.py:1: syntax error"):
        load_hooks(load_module(d))


def test_shipped_module_toml_parse_is_kept_like_bytecode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped files' parse is kept beside the package and used while their bytes are
    the same (no tomllib then); other folders are parsed each time; the result is the
    same either way."""
    import sys
    import tomllib

    from mkkdumprd.assemble import shipped_toml

    kept = tmp_path / "pycache" / "module-toml.json"
    monkeypatch.setattr(shipped_toml, "_STORE", None)
    monkeypatch.setattr(shipped_toml._Store, "file", lambda self: kept)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    first = load_all(data_dir("modules.d"))
    assert kept.is_file()
    monkeypatch.setattr(shipped_toml, "_STORE", None)   # a new process
    real = tomllib.loads
    calls: list[str] = []
    monkeypatch.setattr(tomllib, "loads", lambda text: calls.append(text) or real(text))
    assert load_all(data_dir("modules.d")) == first
    assert calls == []
    own = tmp_path / "mods" / "own"
    own.mkdir(parents=True)
    (own / "module.toml").write_text('name = "own"\r\ndescription = "x"\r\n')
    assert load_module(own).name == "own"
    assert len(calls) == 1
    (own / "module.toml").write_text('name = "own"\ndescription = \n')
    with pytest.raises(ModuleDefError, match="invalid TOML"):
        load_module(own)
