"""Name rules: kmod's normalization, module suffixes, and our fnmatch against libc's
fnmatch(3) with flags 0 (what kmod calls) on generated patterns."""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mkkdumprd.host import Host
from mkkdumprd.image.spec import Codec
from mkkdumprd.kmod.modinfo import read_modinfo
from mkkdumprd.kmod.names import (
    AliasTable,
    fnmatch,
    modname_from_path,
    module_suffix,
    normalize,
    strip_compression,
)
from tests.support.fake_kmod import fake_ko

_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]


def c_fnmatch(pattern: str, name: str) -> bool:
    return bool(_libc.fnmatch(pattern.encode(), name.encode(), 0) == 0)


def test_normalize_keeps_brackets() -> None:
    assert normalize("fs-ext4") == "fs_ext4"
    assert normalize("pci:v*d[0-9-]*x-y") == "pci:v*d[0-9-]*x_y"
    assert normalize("a-[b-c]-d") == "a_[b-c]_d"


def test_suffixes() -> None:
    assert module_suffix("a.ko.xz") == (".ko.xz", Codec.XZ)
    assert module_suffix("a.ko.zst") == (".ko.zst", Codec.ZSTD)
    assert module_suffix("a.ko.gz") == (".ko.gz", Codec.GZIP)
    assert module_suffix("a.ko") == (".ko", Codec.NONE)
    assert module_suffix("a.o") is None
    assert strip_compression("kernel/x/crc32c-intel.ko.xz") == "kernel/x/crc32c-intel.ko"
    assert modname_from_path("kernel/x/crc32c-intel.ko.xz") == "crc32c_intel"


_char = st.sampled_from(list("ab-_:0]"))
_bracket = st.builds(
    lambda neg, parts: "[" + neg + "".join(parts) + "]",
    st.sampled_from(["", "!", "^"]),
    st.lists(st.one_of(_char, st.builds(lambda a, b: f"{a}-{b}", _char, _char),
                       st.builds(lambda a: "\\" + a, _char)), min_size=1, max_size=3))
_token = st.one_of(st.sampled_from(list("ab-_:0!^*?")), st.just("\\*"), _bracket)
# Well-formed patterns (closed brackets): glibc's handling of an unclosed `[` is
# inconsistent (`[a` is literal, `[0-` matches nothing) and no alias uses one.
_pattern = st.lists(_token, max_size=5).map("".join)


@settings(max_examples=1000, deadline=None)
@given(_pattern, st.text(st.sampled_from(list("ab-_:0[]!*?\\")), max_size=6))
def test_fnmatch_agrees_with_libc(pattern: str, name: str) -> None:
    assert fnmatch(pattern, name) == c_fnmatch(pattern, name), (pattern, name)


def test_alias_table_prefix_lookup_keeps_insertion_order() -> None:
    t = AliasTable()
    t.add("pci:v00001AF4d*sv*sd*bc*sc*i*", "virtio_pci")
    t.add("pci:v*d*sv*sd*bc01sc08i02*", "nvme")
    t.add("fs-ext4", "ext4")
    t.add("pci:v00001AF4d00001001*", "virtio_pci")
    assert t.match("pci:v00001AF4d00001001sv0sd0bc01sc08i02") == ["virtio_pci", "nvme"]
    assert t.match(normalize("fs-ext4")) == ["ext4"]
    assert t.match("fs_ext") == []
    assert len(t) == 4


def test_modinfo_roundtrip(tmp_path: Path) -> None:
    ko = tmp_path / "a.ko"
    ko.write_bytes(fake_ko([("alias", "a=b"), ("depends", "x,y"), ("softdep", "pre: q")]))
    info = read_modinfo(Host.this_machine(), ko)
    assert info.aliases == ("a=b",)
    assert info.depends == ("x", "y")
    assert info.softdeps == ("pre: q",)
    ko.write_bytes(fake_ko({"depends": ""}))
    assert read_modinfo(Host.this_machine(), ko).depends == ()
