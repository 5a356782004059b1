"""The build cache: where it lives, what it refuses to read, and that the cached module
index, ELF headers and templates are used while their files are unchanged and dropped
when they change."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import jinja2
import pytest

from mkkdumprd.assemble import cache
from mkkdumprd.assemble.cached import BuildCache
from mkkdumprd.assemble.templates import TemplateCache, environment, render
from mkkdumprd.elf import objects
from mkkdumprd.kmod.index import ModuleDirMissing, ModuleIndex
from mkkdumprd.resources import data_dir
from tests.support.fake_kmod import write_depmod_text, write_module


@pytest.fixture
def cdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(d))
    return d


def test_where_the_cache_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cache.ENV, "off")
    assert cache.cache_dir() is None
    monkeypatch.delenv(cache.ENV)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cache.cache_dir() == Path("/var/cache/mkkdumprd")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "mkkdumprd"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "mkkdumprd"


def test_round_trip_and_key(cdir: Path) -> None:
    cache.store("t", "name", ("k", 1), {"v": [1, 2]})
    assert cache.load("t", "name", ("k", 1)) == {"v": [1, 2]}
    assert cache.load("t", "name", ("k", 2)) is None
    assert cache.load("t", "other", ("k", 1)) is None
    assert oct(cdir.stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in cdir.iterdir() if p.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize("damage", [
    lambda b: b"",
    lambda b: b[:-7],
    lambda b: b.replace(b"mkkdumprd-cache 1 ", b"mkkdumprd-cache 0 "),
    lambda b: b.split(b"\n", 1)[0] + b"\nnot a pickle",
])
def test_damaged_or_foreign_files_are_absent(cdir: Path, damage: object) -> None:
    cache.store("t", "name", 1, "value")
    (f,) = cdir.iterdir()
    f.write_bytes(damage(f.read_bytes()))  # type: ignore[operator]
    assert cache.load("t", "name", 1) is None
    cache.store("t", "name", 1, "again")
    assert cache.load("t", "name", 1) == "again"


def test_a_directory_others_can_write_is_neither_read_nor_written(cdir: Path) -> None:
    cache.store("t", "name", 1, "value")
    cdir.chmod(0o775)
    assert cache.load("t", "name", 1) is None
    cache.store("t", "name", 1, "changed")
    cdir.chmod(0o700)
    assert cache.load("t", "name", 1) == "value"


def test_an_unwritable_place_is_silently_no_cache(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.ENV, str(blocker / "cache"))
    cache.store("t", "name", 1, "value")
    assert cache.load("t", "name", 1) is None


def _tree(root: Path) -> Path:
    kmoddir = root / "lib/modules/1.0"
    mods = {"kernel/a/a.ko": ["kernel/b/b.ko"], "kernel/b/b.ko": []}
    for rel in mods:
        write_module(kmoddir, rel, {"name": Path(rel).stem, "alias": f"x:{Path(rel).stem}*"})
    write_depmod_text(kmoddir, mods, aliases=[("x:a*", "a"), ("x:b*", "b")])
    return kmoddir


def _index(kmoddir: Path) -> ModuleIndex:
    """One build's use of the cache: the index is stored when the block ends."""
    with BuildCache() as run:
        return run.module_index(kmoddir, "1.0")


def test_module_index_cached_until_the_tree_changes(cdir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    kmoddir = _tree(tmp_path)
    first = _index(kmoddir)
    assert first.lookup("x:a1") == ("a",)
    calls: list[Path] = []
    real = ModuleIndex.load

    def counting(kmoddir: Path, kver: str, *a: object, **kw: object) -> ModuleIndex:
        calls.append(kmoddir)
        return real(kmoddir, kver)

    monkeypatch.setattr(ModuleIndex, "load", counting)
    again = _index(kmoddir)
    assert calls == []
    assert dict(again.modules) == dict(first.modules) and again.lookup("x:b2") == ("b",)
    # depmod ran: a new index file.
    write_depmod_text(kmoddir, {"kernel/a/a.ko": [], "kernel/b/b.ko": []})
    assert _index(kmoddir).deps["a"] == ()
    assert len(calls) == 1
    # A module installed in a new directory.
    write_module(kmoddir, "kernel/c/c.ko", {"name": "c"})
    assert "c" in _index(kmoddir).modules
    assert len(calls) == 2
    assert "c" in _index(kmoddir).modules and len(calls) == 2  # kept while unchanged
    # One more in a directory the index recorded: no new folder, no depmod run.
    write_module(kmoddir, "kernel/a/a2.ko", {"name": "a2"})
    assert "a2" in _index(kmoddir).modules
    assert len(calls) == 3


def test_module_index_stored_once_with_what_the_build_parsed(
        cdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not at load (a second pickle of the same index), but when the build's block ends,
    with the aliases it parsed."""
    kmoddir = _tree(tmp_path)
    stored: list[bool] = []
    real_store = cache.store

    def counting(kind: str, name: str, key: object, value: object) -> None:
        if kind == "kmod-index":
            assert isinstance(value, ModuleIndex)
            stored.append(value.aliases_parsed())
        real_store(kind, name, key, value)

    monkeypatch.setattr(cache, "store", counting)
    with BuildCache() as run:
        index = run.module_index(kmoddir, "1.0")
        assert stored == []
        assert index.lookup("x:a1") == ("a",)  # a short key: answered by a scan
        assert index.lookup("x:" + "a" * 40) == ("a",)  # a long one: the file is parsed
    assert stored == [True]
    with BuildCache() as run:  # unchanged: nothing to store again
        assert run.module_index(kmoddir, "1.0").lookup("x:b1") == ("b",)
    assert stored == [True]


def test_elf_headers_survive_the_process(cdir: Path) -> None:
    exe = shutil.which("busybox") or shutil.which("sh")
    assert exe is not None
    objects.known().clear()  # as in a new process
    with BuildCache() as run:
        run.elf_objects()
        parsed = objects.read_elf(exe)
    st = os.stat(exe)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    objects.known().clear()
    with BuildCache() as run:
        assert key not in objects.known()  # loaded when a step asks, not before
        run.elf_objects()
        assert objects.known()[key] == parsed


def test_compiled_templates_are_reused(cdir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t.j2").write_text("echo {{ word | shq }}\n")
    bcc = BuildCache().templates()
    assert bcc is not None
    assert render(environment([tmp_path], bcc), "t.j2", {"word": "a b"}) == "echo 'a b'\n"

    def no_compile(*a: object, **kw: object) -> object:
        raise AssertionError("compiled again")

    monkeypatch.setattr(jinja2.Environment, "compile", no_compile)
    assert render(environment([tmp_path], bcc), "t.j2", {"word": "c"}) == "echo c\n"
    (tmp_path / "t.j2").write_text("printf %s {{ word | shq }}\n")
    with pytest.raises(AssertionError, match="compiled again"):
        render(environment([tmp_path], bcc), "t.j2", {"word": "c"})


def test_shipped_templates_compile_once_beside_the_package(
        cdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like Python's bytecode: kept in the package's __pycache__ (here a stand-in folder),
    whether the build cache is there or not; read only when trusted; not written under
    PYTHONDONTWRITEBYTECODE, where the build cache keeps them instead."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    folder = tmp_path / "pycache"
    shipped = [data_dir("templates")]
    environment(shipped, TemplateCache(folder)).get_template("lib.sh.j2")
    (compiled,) = folder.iterdir()
    assert not cdir.exists() or not list(cdir.glob("jinja-*"))  # not in the build cache

    def no_compile(*a: object, **kw: object) -> object:
        raise AssertionError("compiled again")

    with monkeypatch.context() as m:
        m.setattr(jinja2.Environment, "compile", no_compile)
        environment(shipped, TemplateCache(folder, use_build_cache=False)
                    ).get_template("lib.sh.j2")
        compiled.chmod(0o664)  # writable by others than its owner: not trusted
        with pytest.raises(AssertionError, match="compiled again"):
            environment(shipped, TemplateCache(folder)).get_template("lib.sh.j2")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    other = tmp_path / "pycache2"
    environment(shipped, TemplateCache(other)).get_template("lib.sh.j2")
    assert not other.exists()
    assert len(list(cdir.glob("jinja-*"))) == 1
    # Templates from elsewhere (--templates-dir) never go beside the package.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "t.j2").write_text("echo hi\n")
    environment([tmp_path / "own"], TemplateCache(other)).get_template("t.j2")
    assert not other.exists()
    assert len(list(cdir.glob("jinja-*"))) == 2


def test_prefetched_module_index(cdir: Path, tmp_path: Path) -> None:
    """Loaded in a thread while the build plans: the same index; its errors are raised where
    the build takes the index; one never taken is still stored."""
    kmoddir = _tree(tmp_path)
    with BuildCache() as run:
        run.prefetch_module_index(kmoddir, "1.0")
        run.prefetch_module_index(kmoddir, "1.0")  # the same: one thread
        index = run.module_index(kmoddir, "1.0")
    assert dict(index.modules) == {"a": "kernel/a/a.ko", "b": "kernel/b/b.ko"}
    assert index.deps["a"] == ("b",)
    missing = tmp_path / "nope"
    with BuildCache() as run:
        run.prefetch_module_index(missing, "1.0")
        with pytest.raises(ModuleDirMissing):
            run.module_index(missing, "1.0")
    shutil.rmtree(cdir)
    with BuildCache() as run:
        run.prefetch_module_index(kmoddir, "1.0")   # a build that fails before it asks
    assert list(cdir.glob("kmod-index-*"))


def test_prefetched_digests(cdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashed in a thread ahead of the manifest; sha256() then reads each file no more."""
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_bytes(b"x" * (i + 1) * 100_000)
        files.append(f)
    with BuildCache() as run:
        run.prefetch_digests([str(f) for f in files] + [str(tmp_path / "missing")])
        run._join_digests()
        monkeypatch.setattr("mkkdumprd.assemble.digests.sha256_file",
                            lambda p: pytest.fail(f"hashed {p} again"))
        for f in files:
            assert run.sha256(str(f)) == hashlib.sha256(f.read_bytes()).hexdigest()
        assert run.sha256(str(tmp_path / "missing")) is None


def test_prefetch_leaves_the_modinfo_scan_to_the_main_thread(
        cdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a current depmod index the scan (a process pool for big trees) is not forked
    from the thread while the main thread may be importing."""
    import threading

    from mkkdumprd.kmod import index as index_mod

    kmoddir = _tree(tmp_path)
    (kmoddir / "modules.dep").unlink()
    threads: list[str] = []
    real = index_mod.scan_modinfo

    def recording(*a: object, **kw: object) -> object:
        threads.append(threading.current_thread().name)
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(index_mod, "scan_modinfo", recording)
    with BuildCache() as run:
        run.prefetch_module_index(kmoddir, "1.0")
        index = run.module_index(kmoddir, "1.0")
    assert index.source == "modinfo" and set(index.modules) == {"a", "b"}
    assert threads == [threading.main_thread().name]
