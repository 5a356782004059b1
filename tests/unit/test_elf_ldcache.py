"""ld.so.cache parsing, checked against glibc's own `ldconfig -p` on real caches."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.elf.ldcache import (
    EXTENSION_MAGIC,
    NEW_MAGIC,
    CacheFormatError,
    parse_ld_cache,
)

needs_ldconfig = pytest.mark.skipif(shutil.which("ldconfig") is None,
                                    reason="ldconfig is not installed")
_LINE = re.compile(r"^\t(\S+) \(([^)]*)\) => (.*)$")


def ldconfig_p(cache: Path) -> list[tuple[str, str]]:
    out = subprocess.run(["ldconfig", "-p", "-C", str(cache)], capture_output=True, text=True,
                         check=True, env={"LC_ALL": "C", "PATH": "/usr/sbin:/sbin:/usr/bin"})
    rows = []
    for line in out.stdout.splitlines():
        m = _LINE.match(line)
        if m:
            rows.append((m.group(1), m.group(3)))
    return rows


@needs_ldconfig
def test_real_cache_equals_ldconfig_p() -> None:
    cache = Path("/etc/ld.so.cache")
    if not cache.exists():
        pytest.skip("no /etc/ld.so.cache here")
    parsed = parse_ld_cache(cache.read_bytes())
    rows = ldconfig_p(cache)
    assert len(rows) > 50
    assert [(e.name, e.path) for e in parsed.entries] == rows


@needs_ldconfig
@pytest.mark.parametrize("fmt,expected", [("new", "new"), ("compat", "old+new"), ("old", "old")])
def test_every_format_ldconfig_writes(tmp_path: Path, fmt: str, expected: str) -> None:
    libdir = tmp_path / "d"
    libdir.mkdir()
    shutil.copy("/usr/lib/x86_64-linux-gnu/libz.so.1", libdir / "libz-fixture.so.1")
    conf = tmp_path / "ld.so.conf"
    conf.write_text(f"{libdir}\n")
    cache = tmp_path / "ld.so.cache"
    subprocess.run(["ldconfig", "-X", "-c", fmt, "-C", str(cache), "-f", str(conf)],
                   check=True, capture_output=True)
    parsed = parse_ld_cache(cache.read_bytes())
    assert parsed.format == expected
    assert [(e.name, e.path) for e in parsed.entries] == ldconfig_p(cache)
    assert parsed.lookup("libz.so.1", {0x0303}) is not None
    assert parsed.lookup("libc.so.6", {0x0303}) is not None
    assert parsed.lookup("libc.so.6", {0x0A03}) is None  # aarch64 wants other entries


def build_new_cache(entries: list[tuple[str, str, int, int]], hwcaps: list[str]) -> bytes:
    """A glibc-ld.so.cache1.1 image: (name, path, flags, hwcap) rows, strings after them."""
    header_size, entry_size = 48, 24
    strings = bytearray()
    offsets: dict[str, int] = {}
    table_end = header_size + entry_size * len(entries)

    def s(text: str) -> int:
        if text not in offsets:
            offsets[text] = table_end + len(strings)
            strings.extend(text.encode() + b"\0")
        return offsets[text]

    rows = b"".join(struct.pack("<iIIIQ", fl, s(n), s(p), 0, hw) for n, p, fl, hw in entries)
    sub_offs = [s(h) for h in hwcaps]
    while (table_end + len(strings)) % 4:
        strings.append(0)
    ext_off = table_end + len(strings)
    arr = struct.pack(f"<{len(sub_offs)}I", *sub_offs)
    ext = struct.pack("<II", EXTENSION_MAGIC, 1) + struct.pack(
        "<IIII", 1, 0, ext_off + 8 + 16, len(arr)) + arr
    header = NEW_MAGIC + struct.pack("<IIB3xI12x", len(entries), len(strings), 2, ext_off)
    return bytes(header + rows + strings + ext)


def test_lookup_skips_other_abis_and_prefers_best_hwcaps() -> None:
    ext = 0x4000000000000000
    data = build_new_cache([
        ("libfoo.so.1", "/usr/lib/i386-linux-gnu/libfoo.so.1", 0x0003, 0),
        ("libfoo.so.1", "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libfoo.so.1",
         0x0303, ext | 1),
        ("libfoo.so.1", "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v2/libfoo.so.1",
         0x0303, ext | 0),
        ("libfoo.so.1", "/usr/lib/x86_64-linux-gnu/tls/libfoo.so.1", 0x0303, 1 << 63),
        ("libfoo.so.1", "/usr/lib/x86_64-linux-gnu/libfoo.so.1", 0x0303, 0),
    ], ["x86-64-v2", "x86-64-v3"])
    cache = parse_ld_cache(data)
    assert cache.format == "new"
    assert [e.hwcaps_subdir for e in cache.entries] == [None, "x86-64-v3", "x86-64-v2", None,
                                                        None]
    x86 = {0x0303}
    assert cache.lookup("libfoo.so.1", x86) == "/usr/lib/x86_64-linux-gnu/libfoo.so.1"
    v2 = cache.lookup("libfoo.so.1", x86, ("x86-64-v2",))
    assert v2 is not None and v2.endswith("x86-64-v2/libfoo.so.1")
    v3 = cache.lookup("libfoo.so.1", x86, ("x86-64-v4", "x86-64-v3", "x86-64-v2"))
    assert v3 is not None and v3.endswith("x86-64-v3/libfoo.so.1")
    assert cache.lookup("libfoo.so.1", {0x0003}) == "/usr/lib/i386-linux-gnu/libfoo.so.1"
    assert cache.lookup("libbar.so", x86) is None


def test_garbage_is_rejected() -> None:
    with pytest.raises(CacheFormatError):
        parse_ld_cache(b"not a cache at all")
    with pytest.raises(CacheFormatError):
        parse_ld_cache(NEW_MAGIC + b"\xff\xff\xff\x00" + bytes(24))
