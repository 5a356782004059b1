"""Crafted and damaged images: the reader streams with bounded buffers, checks every newc
header field, and ends with one sentence (issue 14, items 4, 7 and 12).

The fuzz test at the end is the class test: any byte-level damage to real images of every
compression, in any place, gives a listing or an ImageFormatError/UsageError, within a
memory cap and without a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkkdumprd.cli import main
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.reader import (
    ImageFormatError,
    read_file,
    read_members,
    read_sorted_member,
)
from mkkdumprd.image.spec import ImageSpec, data_entry, symlink_entry
from mkkdumprd.image.writer import write_image
from tests.support.bounded import bounded_call


def newc(name: str, size: int = 0, mode: int = 0o100644, *, namesize: str | None = None,
         filesize: str | None = None, data: bytes | None = None) -> bytes:
    """One newc member, with fields that can be overridden by raw strings."""
    raw = name.encode() + b"\0"
    fields = [f"{x:08x}" for x in (1, mode, 0, 0, 1, 0)]
    fields.append(filesize if filesize is not None else f"{size:08x}")
    fields += ["00000000"] * 4
    fields.append(namesize if namesize is not None else f"{len(raw):08x}")
    fields.append("00000000")
    out = b"070701" + "".join(fields).encode() + raw
    out += b"\0" * (-len(out) % 4)
    if data is not None:
        out += data + b"\0" * (-len(data) % 4)
    return out


TRAILER = newc("TRAILER!!!")


@pytest.mark.parametrize("field", ["-0000010", "+0000010", " 0000010", "0x000010",
                                   "0000001g"])
def test_header_fields_must_be_eight_hex_digits(tmp_path: Path, field: str) -> None:
    img = tmp_path / "img"
    img.write_bytes(newc("a", filesize=field) + b"x" * 64 + TRAILER)
    with pytest.raises(ImageFormatError, match=r"field filesize is .* not eight hex digits"):
        read_members(img)


def test_name_size_is_bounded_before_anything_is_read(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.write_bytes((newc("a", namesize="FFFFFFFF") + b"\0" * 200)[:212])
    with pytest.raises(ImageFormatError, match="name size 4294967295 is not between 1 and"):
        bounded_call(read_members, img, allowed=())
    img.write_bytes(newc("a", namesize="00000000"))
    with pytest.raises(ImageFormatError, match="name size 0"):
        read_members(img)


def test_file_data_cut_short_is_truncation_not_an_empty_listing(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.write_bytes(newc("init", 1000) + b"y" * 500)
    with pytest.raises(ImageFormatError, match="only 506 are left; the image is truncated"):
        read_members(img)
    z = tmp_path / "z"
    z.write_bytes(zstandard.ZstdCompressor().compress(newc("init", 1000) + b"y" * 500))
    with pytest.raises(ImageFormatError, match="data of /init is truncated"):
        read_members(z)


def _zstd_bomb(path: Path, tail_of_nuls: bool = False) -> None:
    """A ~128 KB zstd frame that unpacks to 4 GiB (one huge zero file, or NUL padding),
    written block by block (RFC 8878): one raw block with the cpio headers, then 32768
    RLE blocks of 128 KiB of zeros, 4 bytes each."""
    head = newc("a") + TRAILER if tail_of_nuls else newc("big", 0xFFFFFFFF)

    def block(kind: int, size: int, last: bool) -> bytes:
        return ((size << 3) | (kind << 1) | int(last)).to_bytes(3, "little")

    out = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0x00, 0x38]))  # no size; 128 KiB window
    out += block(0, len(head), False) + head
    n = (4 << 30) // (128 << 10)
    for i in range(n):
        out += block(1, 128 << 10, i == n - 1) + b"\0"
    path.write_bytes(bytes(out))


@pytest.mark.parametrize("nuls", [False, True], ids=["huge-file", "nul-padding"])
def test_zstd_bomb_is_refused_within_a_memory_cap(tmp_path: Path, nuls: bool) -> None:
    img = tmp_path / "bomb.img"
    _zstd_bomb(img, nuls)
    assert img.stat().st_size < 200_000
    # In a child with a 1 GiB address-space limit: the whole 4 GiB cannot be materialised.
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from pathlib import Path
        from mkkdumprd.image.reader import ImageFormatError, read_members
        try:
            read_members(Path({str(img)!r}))
        except ImageFormatError as exc:
            print(exc)
            sys.exit(3)
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 3, res.stderr
    assert "unpacks to more than 2 GiB" in res.stdout


def test_recommend_image_on_a_bomb_is_one_line(tmp_path: Path) -> None:
    img = tmp_path / "bomb.img"
    _zstd_bomb(img)
    result = CliRunner().invoke(main, ["crashkernel", "recommend", "--image", str(img)])
    assert result.exit_code == 2, result.output
    assert "unpacks to more than 2 GiB" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_lz4_magic_with_garbage_is_an_error(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.write_bytes(b"\x02\x21\x4c\x18" + os.urandom(2000))
    with pytest.raises(ImageFormatError, match="lz4"):
        read_members(img)
    img.write_bytes(newc("a") + TRAILER + b"\x02\x21\x4c\x18" + b"\0" * 64)
    with pytest.raises(ImageFormatError, match="lz4"):
        read_members(img)


def test_empty_compressed_stream_is_an_error(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.write_bytes(zstandard.ZstdCompressor().compress(b""))
    with pytest.raises(ImageFormatError, match="holds no data"):
        read_members(img)


def test_read_file_refuses_a_member_larger_than_asked(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.write_bytes(newc("big", 5000, data=b"b" * 5000) + TRAILER)
    with pytest.raises(ImageFormatError, match="more than the 100 read here"):
        read_file(img, "/big", max_size=100)
    assert read_file(img, "/big") == b"b" * 5000


def test_sorted_member_stops_early(tmp_path: Path) -> None:
    spec = ImageSpec()
    spec.add(data_entry("/a", b"A", "x"))
    spec.add(data_entry("/m", b"M", "x"))
    img = tmp_path / "img"
    write_image(spec, img)
    assert read_sorted_member(img, "/a") == b"A"
    assert read_sorted_member(img, "/b") is None
    # A damaged tail after the member is never reached.
    raw = newc("a", 1, data=b"A") + b"garbage-that-is-not-cpio"
    img.write_bytes(raw)
    assert read_sorted_member(img, "/a") == b"A"


def test_ls_escapes_control_characters_in_names(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.write_bytes(newc("evil\x1b[31mred\nline", 0)
                    + newc("l", 7, mode=0o120777, data=b"\x1b]0;x\x07") + TRAILER)
    result = CliRunner().invoke(main, ["ls", str(img)])
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "/evil\\x1b[31mred\\x0aline" in result.stdout
    assert "/l -> \\x1b]0;x\\x07" in result.stdout


@pytest.mark.parametrize("kind", ["fifo", "chardev", "dir"])
def test_ls_and_config_check_refuse_non_regular_files(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        what = "is a FIFO, not a regular file"
    elif kind == "chardev":
        path = Path("/dev/zero")
        what = "is a character device, not a regular file"
    else:
        path = tmp_path
        what = "is a directory"
    for args in (["ls", str(path)], ["config", "check", "-c", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert what in result.stderr
        assert "Traceback" not in result.output


def test_config_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    with conf.open("wb") as f:
        f.truncate(8 << 20)
    result = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert result.exit_code == 2
    assert "more than the 4194304 this input can be" in result.stderr


# ---- the class test: byte-level damage anywhere, every compression -------------------------

def _base_images(tmp: Path) -> dict[str, bytes]:
    spec = ImageSpec()
    spec.add(data_entry("/init", b"#!/bin/sh\nexec sh\n" * 20, "init", mode=0o755))
    spec.add(data_entry("/etc/mkkdumprd/manifest.json", b'{"entries": {}}', "manifest"))
    spec.add(symlink_entry("/bin", "usr/bin", "link"))
    spec.add(data_entry("/usr/bin/x", bytes(range(256)) * 8, "binary"))
    out: dict[str, bytes] = {}
    for comp in Compression:
        p = tmp / f"base-{comp.value}"
        write_image(spec, p, compression=comp)
        out[comp.value] = p.read_bytes()
    lz4 = subprocess.run(["lz4", "-l", "-q"], input=out["none"], capture_output=True)
    if lz4.returncode == 0:
        out["lz4"] = lz4.stdout
    return out


_BASES: dict[str, bytes] = {}


def _bases(tmp: Path) -> dict[str, bytes]:
    if not _BASES:
        _BASES.update(_base_images(tmp))
    return _BASES


@settings(max_examples=120, deadline=10_000,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["none", "zstd", "gzip", "xz", "lz4"]),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(min_value=0),
    tail=st.binary(max_size=64),
    prefix=st.sampled_from([b"", b"070701", b"\x28\xb5\x2f\xfd", b"\x02\x21\x4c\x18",
                            b"\x1f\x8b", b"\0\0\0\0"]),
)
def test_fuzz_damaged_images(tmp_path_factory: pytest.TempPathFactory, which: str,
                             edits: list[tuple[int, int]], cut: int | None, tail: bytes,
                             prefix: bytes) -> None:
    bases = _bases(tmp_path_factory.mktemp("bases"))
    data = bytearray(bases.get(which, bases["none"]))
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1):]
    img = tmp_path_factory.mktemp("fuzz") / "img"
    img.write_bytes(prefix + bytes(data) + tail)
    bounded_call(read_members, img)
    bounded_call(read_file, img, "/init")
    bounded_call(read_sorted_member, img, "/etc/mkkdumprd/manifest.json")


@settings(max_examples=100, deadline=10_000,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_fuzz_random_headers(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    img = tmp_path_factory.mktemp("fuzz") / "img"
    img.write_bytes(b"070701" + data)
    bounded_call(read_members, img)

