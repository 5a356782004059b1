"""The class test for readers of untrusted bytes (issue 14): manifests inside images,
kdump.conf, module indexes and modprobe.d, each fuzzed with bounded memory per case
(tests/support/bounded.py) and hypothesis' deadline as the hang guard. A case may only
return or raise one of mkkdumprd's own errors.

Images and compressed streams: tests/unit/test_image_reader_hostile.py. Boot configuration
files and crashkernel= on /proc/cmdline: tests/unit/test_crashkernel_hardening.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkkdumprd.assemble.freshness import read_manifest
from mkkdumprd.cli.ls_cmd import MANIFEST, load_reasons
from mkkdumprd.config.kdumpconf import parse_kdump_conf_bytes, read_kdump_conf
from mkkdumprd.host import Host
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.reader import read_members
from mkkdumprd.image.size_report import size_lines
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image
from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.index import ModuleIndex
from mkkdumprd.kmod.modprobe_d import parse_modprobe_text
from mkkdumprd.kmod.names import AliasTable
from mkkdumprd.records.crashes import list_crashes
from mkkdumprd.records.outcome import OUTCOME_FILE, PREFIX
from tests.support.bounded import bounded_call

_FAST = settings(max_examples=60, deadline=10_000,
                 suppress_health_check=[HealthCheck.too_slow,
                                        HealthCheck.function_scoped_fixture])

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)


def _manifest_bytes() -> st.SearchStrategy[bytes]:
    as_json = _json.map(lambda v: json.dumps(v).encode())
    entries = st.dictionaries(st.text(max_size=12), _json, max_size=4).map(
        lambda d: json.dumps({"entries": d, "inputs": d, "request": d}).encode())
    deep = st.integers(1, 300_000).map(lambda n: b"[" * n + b"]" * n)
    deep_obj = st.integers(1, 300_000).map(lambda n: b'{"entries":' + b"[" * n)
    return st.one_of(as_json, entries, deep, deep_obj, st.binary(max_size=200))


@_FAST
@given(raw=_manifest_bytes())
def test_fuzz_manifests(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    spec = ImageSpec()
    spec.add(data_entry("/init", b"#!/bin/sh\n", "init", mode=0o755))
    spec.add(data_entry(MANIFEST, raw, "manifest"))
    img = tmp_path_factory.mktemp("m") / "img"
    write_image(spec, img, compression=Compression.ZSTD)
    doc = bounded_call(read_manifest, img)
    assert doc is None or isinstance(doc, dict)
    members = read_members(img)
    bounded_call(load_reasons, img, members)
    bounded_call(size_lines, img)


@_FAST
@given(data=st.binary(max_size=2000))
def test_fuzz_kdump_conf_bytes(data: bytes) -> None:
    result = bounded_call(parse_kdump_conf_bytes, data)
    assert result is not None        # parsing reports problems, it never raises


@_FAST
@given(lines=st.lists(st.tuples(
    st.sampled_from(["ext4", "xfs", "nfs", "ssh", "raw", "path", "core_collector",
                     "extra_bins", "extra_modules", "kdump_pre", "failure_action",
                     "default", "sshkey", "dracut_args", "#", ""]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)),
    max_size=12))
def test_fuzz_kdump_conf_files(tmp_path_factory: pytest.TempPathFactory,
                               lines: list[tuple[str, str]]) -> None:
    conf = tmp_path_factory.mktemp("c") / "kdump.conf"
    conf.write_text("".join(f"{k} {v}\n" for k, v in lines), errors="surrogateescape")
    bounded_call(read_kdump_conf, conf)


_record_line = st.one_of(
    st.binary(max_size=60),
    st.tuples(st.sampled_from([b"version", b"result", b"reason", b"duration", b"target.1",
                               b"target.7.result", b"console", b"end", b""]),
              st.binary(max_size=40)).map(lambda kv: PREFIX.encode() + b" " + kv[0] + b"="
                                          + kv[1]))


@_FAST
@given(record=st.lists(_record_line, max_size=30).map(b"\n".join),
       dmesg=st.binary(max_size=300))
def test_fuzz_crash_directories(tmp_path_factory: pytest.TempPathFactory, record: bytes,
                                dmesg: bytes) -> None:
    """What `report` and `status` read: the outcome record (in the directory and in a
    pstore dmesg file), vmcore-dmesg.txt, any bytes."""
    root = tmp_path_factory.mktemp("r")
    crash = root / "var/crash/127.0.0.1-2026-12-03-10:00:05"
    (crash / "pstore").mkdir(parents=True)
    (crash / OUTCOME_FILE).write_bytes(record)
    (crash / "pstore/dmesg-ramoops-0").write_bytes(dmesg + b"\n" + record)
    (crash / "vmcore-dmesg.txt").write_bytes(dmesg)
    found = bounded_call(list_crashes, Host(root), [PurePosixPath("/var/crash")])
    assert len(found) == 1
    json.dumps(found[0].as_json())


_index_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from([
        "kernel/a.ko: kernel/b.ko", "kernel/b.ko:", "/lib/modules/x/kernel/c.ko: b.ko",
        "alias pci:v*d* a", "alias x", "softdep a pre: b post: c", "softdep",
        "alias symbol:foo b", "kernel/a.ko", "a.alias=x\0b.alias=y", ": :", "a:b:c",
        "alias [a-z b", "alias * a", "kernel/../../etc/passwd:",
    ]), max_size=20).map("\n".join))

_INDEX_FILES = ("modules.dep", "modules.alias", "modules.softdep", "modules.builtin",
                "modules.builtin.modinfo", "modules.order", "modules.symbols")


@_FAST
@given(files=st.fixed_dictionaries({name: _index_text for name in _INDEX_FILES}),
       names=st.lists(st.sampled_from(["a", "b", "c", "x", "pci:v00001234d00000001",
                                       "symbol:foo", "fs-ext4", "[", "*"]), max_size=4),
       modprobe=st.text(max_size=200))
def test_fuzz_module_indexes(tmp_path_factory: pytest.TempPathFactory,
                             files: dict[str, str], names: list[str], modprobe: str) -> None:
    kmoddir = tmp_path_factory.mktemp("k") / "lib/modules/9.9"
    (kmoddir / "kernel").mkdir(parents=True)
    for name, text in files.items():
        (kmoddir / name).write_text(text, errors="surrogateescape")
    mp = kmoddir.parent / "modprobe.d"
    mp.mkdir()
    (mp / "x.conf").write_text(modprobe, errors="surrogateescape")
    config = bounded_call(parse_modprobe_text, modprobe)
    loaded = bounded_call(ModuleIndex.load, kmoddir, "9.9", [mp])
    # and the depmod text index itself, whether or not load() found it current
    text = bounded_call(ModuleIndex._from_index, Host(Path("/")), kmoddir, "9.9", config,
                        frozenset(), AliasTable(), {})
    for index in (loaded, text):
        if index is None:
            continue
        for n in names:
            bounded_call(index.lookup, n)
            bounded_call(index.softdep_of, n)
            bounded_call(index.symbols)
        bounded_call(resolve_modules, index, names)


def test_index_files_that_are_fifos_do_not_hang(tmp_path: Path) -> None:
    kmoddir = tmp_path / "lib/modules/9.9"
    (kmoddir / "kernel").mkdir(parents=True)
    for name in _INDEX_FILES:
        os.mkfifo(kmoddir / name)
    index = bounded_call(ModuleIndex.load, kmoddir, "9.9")
    assert index is not None and not index.modules
