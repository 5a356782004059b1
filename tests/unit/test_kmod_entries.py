"""Modules and firmware as image entries: decompressed module paths with their codec, the
load list in order, firmware search order, compressed firmware, symlinks, warnings."""

from __future__ import annotations

import lzma
import os
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.host import Host
from mkkdumprd.image.spec import Codec, ImageSpec, Kind
from mkkdumprd.kmod.closure import KModule, ModuleClosure, resolve_modules
from mkkdumprd.kmod.entries import LOAD_LIST, module_entries
from mkkdumprd.kmod.firmware import firmware_entries
from mkkdumprd.kmod.index import ModuleIndex
from tests.support.fake_kmod import write_module

KVER = "6.6.0-test"


@pytest.fixture
def closure(tmp_path: Path) -> ModuleClosure:
    kmoddir = tmp_path / "lib" / "modules" / KVER
    write_module(kmoddir, "kernel/lib/base.ko.zst", {"depends": ""})
    write_module(kmoddir, "kernel/net/nic.ko.xz", {
        "depends": "base", "firmware": ["nic/a.bin", "nic/b.bin", "nic/link.bin",
                                        "nic/missing.bin"]})
    write_module(kmoddir, "kernel/gpu/g.ko", {"depends": "", "firmware": "g/*.fw"})
    return resolve_modules(ModuleIndex.load(kmoddir, KVER), ["nic", "g"])


def test_module_entries_decompressed_paths_and_load_list(closure: ModuleClosure) -> None:
    entries = module_entries(closure)
    by_path = {str(e.path): e for e in entries}
    base = f"/lib/modules/{KVER}"
    assert set(by_path) == {f"{base}/kernel/lib/base.ko", f"{base}/kernel/net/nic.ko",
                            f"{base}/kernel/gpu/g.ko", f"{base}/{LOAD_LIST}"}
    assert by_path[f"{base}/kernel/lib/base.ko"].codec is Codec.ZSTD
    assert by_path[f"{base}/kernel/net/nic.ko"].codec is Codec.XZ
    assert by_path[f"{base}/kernel/net/nic.ko"].source == closure.modules[1].path
    assert by_path[f"{base}/kernel/gpu/g.ko"].codec is Codec.NONE
    load = by_path[f"{base}/{LOAD_LIST}"].data
    assert load == b"kernel/lib/base.ko\nkernel/net/nic.ko\nkernel/gpu/g.ko\n"
    spec = ImageSpec()
    spec.extend(entries)
    spec.extend(module_entries(closure))  # same content twice is fine
    assert len(spec) == 4


def test_firmware_search_order_compression_links_and_warnings(
        closure: ModuleClosure, tmp_path: Path) -> None:
    root = tmp_path / "host"
    fw = root / "lib" / "firmware"
    (fw / "updates" / "nic").mkdir(parents=True)
    (fw / "nic").mkdir(parents=True)
    (fw / "g").mkdir(parents=True)
    (fw / "nic" / "a.bin").write_bytes(b"old")
    (fw / "updates" / "nic" / "a.bin").write_bytes(b"new")
    (fw / "nic" / "b.bin.xz").write_bytes(lzma.compress(b"bbb"))
    (fw / "nic" / "real-c.bin").write_bytes(b"ccc")
    os.symlink("real-c.bin", fw / "nic" / "c.bin")
    os.symlink("c.bin", fw / "nic" / "link.bin")
    (fw / "g" / "one.fw").write_bytes(b"1")
    (fw / "g" / "two.fw").write_bytes(b"2")
    (fw / "g" / "other.bin").write_bytes(b"x")
    entries, warnings = firmware_entries(closure, Host(root))
    by_path = {str(e.path): e for e in entries}
    assert set(by_path) == {
        "/lib/firmware/updates/nic/a.bin", "/lib/firmware/nic/b.bin.xz",
        "/lib/firmware/nic/link.bin", "/lib/firmware/nic/c.bin",
        "/lib/firmware/nic/real-c.bin", "/lib/firmware/g/one.fw", "/lib/firmware/g/two.fw"}
    assert by_path["/lib/firmware/updates/nic/a.bin"].source == fw / "updates/nic/a.bin"
    assert by_path["/lib/firmware/nic/b.bin.xz"].codec is Codec.NONE  # kept compressed
    assert by_path["/lib/firmware/nic/link.bin"].kind is Kind.SYMLINK
    assert by_path["/lib/firmware/nic/link.bin"].target == "c.bin"
    assert by_path["/lib/firmware/nic/c.bin"].target == "real-c.bin"
    assert by_path["/lib/firmware/nic/real-c.bin"].kind is Kind.FILE
    assert len(warnings) == 1
    assert "nic" in warnings[0] and "nic/missing.bin" in warnings[0]
    assert "/lib/firmware/updates" in warnings[0]


def test_firmware_through_merged_usr_keeps_lib_paths(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "usr" / "lib" / "firmware").mkdir(parents=True)
    os.symlink("usr/lib", root / "lib")
    (root / "usr" / "lib" / "firmware" / "x.bin").write_bytes(b"x")
    mod = KModule("m", "kernel/m.ko", tmp_path / "m.ko", Codec.NONE, ("x.bin",))
    entries, warnings = firmware_entries(ModuleClosure(KVER, (mod,), ()), Host(root))
    assert warnings == []
    assert [(e.path, e.source) for e in entries] == [
        (PurePosixPath("/lib/firmware/x.bin"), root / "usr/lib/firmware/x.bin")]
