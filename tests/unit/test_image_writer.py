"""The image writer: exact newc bytes, reproducibility, every compression read back by
independent tools (libarchive, GNU cpio after the zstd/xz/gzip CLIs), decoding of
compressed host files, early segment, and the atomic temp-file-and-rename contract."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

import libarchive
import pytest

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.image import writer
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.reader import read_file, read_members
from mkkdumprd.image.spec import (
    Codec,
    ImageSpec,
    Kind,
    data_entry,
    device_entry,
    dir_entry,
    file_entry,
    symlink_entry,
)
from mkkdumprd.image.writer import ImageStats, write_image, write_image_to

DECOMPRESS_CLI = {
    Compression.ZSTD: ["zstd", "-dcq"],
    Compression.XZ: ["xz", "-dc"],
    Compression.GZIP: ["gzip", "-dc"],
    Compression.NONE: ["cat"],
}


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def tiny_spec() -> ImageSpec:
    s = ImageSpec()
    s.add(data_entry("/init", b"#!/bin/sh\n", "the init", mode=0o755))
    s.add(symlink_entry("/bin", "usr/bin", "merged /usr"))
    s.add(device_entry("/dev/console", Kind.CHARDEV, 5, 1, "console"))
    s.add(dir_entry("/proc", "mount point"))
    return s


def test_golden_bytes_of_a_tiny_uncompressed_image() -> None:
    buf = io.BytesIO()
    stats = write_image_to(buf, tiny_spec(), compression=Compression.NONE,
                           source_date_epoch=1700000000)  # 0x6553f100
    # Fields: magic ino mode uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin
    # namesize check; names padded so header+name is a multiple of 4, data padded to 4.
    expected = (
        b"070701" b"00000001" b"0000a1ff" b"00000000" b"00000000" b"00000001" b"6553f100"
        b"00000007" b"00000000" b"00000000" b"00000000" b"00000000" b"00000004" b"00000000"
        b"bin\0" b"\0\0" b"usr/bin" b"\0"
        b"070701" b"00000002" b"000041ed" b"00000000" b"00000000" b"00000002" b"6553f100"
        b"00000000" b"00000000" b"00000000" b"00000000" b"00000000" b"00000004" b"00000000"
        b"dev\0" b"\0\0"
        b"070701" b"00000003" b"00002180" b"00000000" b"00000000" b"00000001" b"6553f100"
        b"00000000" b"00000000" b"00000000" b"00000005" b"00000001" b"0000000c" b"00000000"
        b"dev/console\0" b"\0\0"
        b"070701" b"00000004" b"000081ed" b"00000000" b"00000000" b"00000001" b"6553f100"
        b"0000000a" b"00000000" b"00000000" b"00000000" b"00000000" b"00000005" b"00000000"
        b"init\0" b"\0" b"#!/bin/sh\n" b"\0\0"
        b"070701" b"00000005" b"000041ed" b"00000000" b"00000000" b"00000002" b"6553f100"
        b"00000000" b"00000000" b"00000000" b"00000000" b"00000000" b"00000005" b"00000000"
        b"proc\0" b"\0"
        b"070701" b"00000000" b"00000000" b"00000000" b"00000000" b"00000001" b"00000000"
        b"00000000" b"00000000" b"00000000" b"00000000" b"00000000" b"0000000b" b"00000000"
        b"TRAILER!!!\0" b"\0\0\0"
    )
    assert buf.getvalue() == expected
    assert len(expected) % 4 == 0
    assert stats == ImageStats(compressed_size=len(expected), unpacked_size=10, entries=5,
                               sha256=hashlib.sha256(expected).hexdigest())


def test_gnu_cpio_lists_devices_symlinks_modes(tmp_path: Path) -> None:
    img = tmp_path / "img"
    write_image(tiny_spec(), img, compression=Compression.NONE)
    out = subprocess.run(["cpio", "-tv", "--quiet"], stdin=img.open("rb"), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith("lrwxrwxrwx") and out[0].endswith("bin -> usr/bin")
    assert out[1].startswith("drwxr-xr-x") and out[1].endswith(" dev")
    assert out[2].startswith("crw-------") and "5,   1" in out[2] and out[2].endswith("console")
    assert out[3].startswith("-rwxr-xr-x") and out[3].endswith(" init")
    assert all(" root     root " in line for line in out)
    assert len(out) == 4 + 1  # + /proc


def host_tree(tmp_path: Path) -> ImageSpec:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(3 * (1 << 20) + 123))  # several 1 MiB chunks
    (src / "small").write_text("hello\n")
    (src / "small").chmod(0o640)
    (src / "empty").write_bytes(b"")
    s = ImageSpec()
    s.add(file_entry("/usr/lib/big", src / "big", "big"))
    s.add(file_entry("/etc/small", src / "small", "small"))
    s.add(file_entry("/etc/empty", src / "empty", "empty"))
    s.add(data_entry("/init", "#!/bin/sh\necho hi\n", "init", mode=0o755))
    s.add(symlink_entry("/sbin/init", "../init", "link"))
    return s


def test_reproducible_and_source_date_epoch_changes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = host_tree(tmp_path)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    a, b, c, d = (tmp_path / n for n in "abcd")
    write_image(spec, a)
    for f in (tmp_path / "src").iterdir():  # host mtimes and atimes must not leak
        os.utime(f, (12345, 67890))
    write_image(spec, b)
    assert sha(a) == sha(b)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000000")
    write_image(spec, c)
    assert sha(c) != sha(a)
    assert {m.mtime for m in read_members(c)} == {1600000000}
    write_image(spec, d, source_date_epoch=0)  # the argument wins over the environment
    assert sha(d) == sha(a)
    assert {m.mtime for m in read_members(a)} == {0}


def test_zstd_output_does_not_depend_on_thread_count(tmp_path: Path) -> None:
    spec = host_tree(tmp_path)
    write_image(spec, tmp_path / "t1", threads=1)
    write_image(spec, tmp_path / "t4", threads=4)
    assert sha(tmp_path / "t1") == sha(tmp_path / "t4")


@pytest.mark.parametrize("compression", list(Compression))
def test_round_trip_through_reader_libarchive_and_gnu_cpio(
    tmp_path: Path, compression: Compression
) -> None:
    spec = host_tree(tmp_path)
    img = tmp_path / "image"
    stats = write_image(spec, img, compression=compression)
    assert stats.compressed_size == img.stat().st_size
    src = tmp_path / "src"
    expected_files = {
        "/usr/lib/big": (src / "big").read_bytes(),
        "/etc/small": b"hello\n",
        "/etc/empty": b"",
        "/init": b"#!/bin/sh\necho hi\n",
    }
    assert stats.unpacked_size == sum(len(v) for v in expected_files.values())
    assert stats.entries == len(spec.complete())

    # Our reader.
    members = read_members(img)
    assert {m.compression for m in members} == {compression.value}
    assert [m.path for m in members] == [str(e.path) for e in spec.complete()]
    for path, content in expected_files.items():
        assert read_file(img, path) == content
    assert next(m for m in members if m.path == "/etc/small").mode == 0o640

    # libarchive, detecting the filter itself.
    seen = {}
    with libarchive.file_reader(str(img)) as archive:
        for entry in archive:
            seen[entry.pathname] = (b"".join(entry.get_blocks()), entry.uid, entry.mtime)
    assert seen["usr/lib/big"][0] == expected_files["/usr/lib/big"]
    assert seen["sbin/init"][0] == b""
    assert {v[1] for v in seen.values()} == {0}

    # GNU cpio after the compressor's own CLI.
    plain = subprocess.run([*DECOMPRESS_CLI[compression], str(img)], capture_output=True,
                           check=True).stdout
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=plain, capture_output=True,
                             check=True).stdout.decode().split()
    assert listing == [str(e.path).lstrip("/") for e in spec.complete()]
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["cpio", "-idv", "--quiet"], input=plain, cwd=dest, capture_output=True,
                   check=True)
    for path, content in expected_files.items():
        assert (dest / path.lstrip("/")).read_bytes() == content
    assert os.readlink(dest / "sbin/init") == "../init"
    assert stat.S_IMODE((dest / "init").stat().st_mode) == 0o755


def test_xz_uses_crc32_check_for_the_kernel(tmp_path: Path) -> None:
    img = tmp_path / "image"
    write_image(tiny_spec(), img, compression=Compression.XZ)
    robot = subprocess.run(["xz", "--robot", "--list", "--verbose", str(img)],
                           capture_output=True, text=True, check=True).stdout
    stream_lines = [ln.split("\t") for ln in robot.splitlines()
                    if ln.startswith(("stream", "block"))]
    assert stream_lines and all("CRC32" in fields for fields in stream_lines)
    assert "CRC64" not in robot


def test_gzip_header_carries_no_name_or_time(tmp_path: Path) -> None:
    img = tmp_path / "image"
    write_image(tiny_spec(), img, compression=Compression.GZIP)
    head = img.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no FNAME/FCOMMENT flags
    assert head[4:8] == b"\0\0\0\0"  # MTIME


def test_compressed_host_files_land_decoded(tmp_path: Path) -> None:
    src = tmp_path / "mods"
    src.mkdir()
    spec = ImageSpec()
    originals: dict[str, bytes] = {}
    tools = {Codec.GZIP: ["gzip", "-k"], Codec.XZ: ["xz", "-k", "--check=crc64"],
             Codec.ZSTD: ["zstd", "-q", "-k"]}
    suffix = {Codec.GZIP: ".gz", Codec.XZ: ".xz", Codec.ZSTD: ".zst"}
    # More entries than the decode-ahead window, with sizes across the 1 MiB chunk size.
    for i in range(40):
        codec = list(tools)[i % 3]
        body = (f"module {i}\n".encode() * 50) + os.urandom(i * 3000 + (1 << 20) * (i == 7))
        plain = src / f"m{i}.ko"
        plain.write_bytes(body)
        subprocess.run([*tools[codec], str(plain)], check=True)
        packed = Path(str(plain) + suffix[codec])
        spec.add(file_entry(f"/lib/modules/k/m{i}.ko", packed, "module", codec=codec))
        originals[f"/lib/modules/k/m{i}.ko"] = body
    img = tmp_path / "image"
    stats = write_image(spec, img)
    assert stats.unpacked_size == sum(len(b) for b in originals.values())
    for path, body in originals.items():
        assert read_file(img, path) == body
    sizes = {m.path: m.size for m in read_members(img)}
    assert sizes["/lib/modules/k/m7.ko"] == len(originals["/lib/modules/k/m7.ko"])


def test_damaged_compressed_source_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ko.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 10)
    spec = ImageSpec()
    spec.add(file_entry("/lib/modules/bad.ko", bad, "module", codec=Codec.ZSTD))
    with pytest.raises(OperationError, match=r"cannot decode .*bad\.ko\.zst as zstd"):
        write_image(spec, tmp_path / "image")
    assert not (tmp_path / "image").exists()


class _FailsAfterFirstChunk(io.FileIO):
    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if self.tell() >= writer.CHUNK:
            raise OSError(errno.EIO, "Input/output error")
        return super().read(size)


@pytest.mark.parametrize("compression", [Compression.ZSTD, Compression.NONE])
def test_failure_mid_write_keeps_old_image_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: Compression
) -> None:
    out_dir = tmp_path / "boot"
    out_dir.mkdir()
    img = out_dir / "initrd.img"
    img.write_bytes(b"the previous image")
    img.chmod(0o644)
    spec = host_tree(tmp_path)
    big = str(tmp_path / "src" / "big")

    def failing_open(path: object, mode: str = "r", *args: object, **kw: object) -> object:
        if str(path) == big:
            return _FailsAfterFirstChunk(big, "r")
        return open(path, mode, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(writer, "open", failing_open, raising=False)
    with pytest.raises(OperationError, match=r"cannot read .*big for /usr/lib/big"):
        write_image(spec, img, compression=compression)
    assert img.read_bytes() == b"the previous image"
    assert sorted(p.name for p in out_dir.iterdir()) == ["initrd.img"]


def test_missing_source_keeps_old_image(tmp_path: Path) -> None:
    spec = host_tree(tmp_path)
    img = tmp_path / "initrd.img"
    write_image(spec, img)
    before = sha(img)
    (tmp_path / "src" / "small").unlink()
    with pytest.raises(OperationError, match=r"cannot read .*small for /etc/small"):
        write_image(spec, img)
    assert sha(img) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_new_image_is_private_whatever_the_umask(tmp_path: Path) -> None:
    img = tmp_path / "initrd.img"
    img.write_bytes(b"old")
    img.chmod(0o644)
    old = os.umask(0)
    try:
        write_image(tiny_spec(), img)
    finally:
        os.umask(old)
    assert stat.S_IMODE(img.stat().st_mode) == 0o600


def test_missing_destination_directory(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="cannot create a temporary file in"):
        write_image(tiny_spec(), tmp_path / "nope" / "img")


def test_bad_level_and_bad_epoch_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError, match="level 42 is out of range for zstd"):
        write_image(tiny_spec(), tmp_path / "img", level=42)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        write_image(tiny_spec(), tmp_path / "img")
    with pytest.raises(UsageError, match="32-bit"):
        write_image(tiny_spec(), tmp_path / "img", source_date_epoch=1 << 32)
    assert list(tmp_path.iterdir()) == []


def test_early_uncompressed_segment_then_compressed_main(tmp_path: Path) -> None:
    early = ImageSpec()
    early.add(data_entry("/kernel/x86/microcode/GenuineIntel.bin", b"ucode!", "microcode"))
    img = tmp_path / "initrd.img"
    stats = write_image(tiny_spec(), img, early=early)
    raw = img.read_bytes()
    main_at = raw.index(b"\x28\xb5\x2f\xfd")
    assert main_at % 4 == 0
    assert raw[:6] == b"070701"
    assert raw[:main_at].rstrip(b"\0").endswith(b"TRAILER!!!")
    # GNU cpio reads the first (early) archive; the rest is the zstd main archive.
    first = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True,
                           check=True).stdout.decode().split()
    assert first == ["kernel", "kernel/x86", "kernel/x86/microcode",
                     "kernel/x86/microcode/GenuineIntel.bin"]
    main = subprocess.run(["zstd", "-dcq"], input=raw[main_at:], capture_output=True,
                          check=True).stdout
    second = subprocess.run(["cpio", "-t", "--quiet"], input=main, capture_output=True,
                            check=True).stdout.decode().split()
    assert second == ["bin", "dev", "dev/console", "init", "proc"]
    members = read_members(img)
    assert [(m.segment, m.compression) for m in members][:4] == [(0, "none")] * 4
    assert {(m.segment, m.compression) for m in members[4:]} == {(1, "zstd")}
    assert read_file(img, "/kernel/x86/microcode/GenuineIntel.bin") == b"ucode!"
    assert stats.entries == 9 and stats.unpacked_size == 6 + 10


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio is the oracle")
def test_inodes_are_sequential_and_nlink_fixed(tmp_path: Path) -> None:
    img = tmp_path / "img"
    write_image(host_tree(tmp_path), img, compression=Compression.NONE)
    raw = img.read_bytes()
    inos, nlinks, pos = [], [], 0
    while True:
        hdr = raw[pos:pos + 110]
        assert hdr[:6] == b"070701"
        fields = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        namesize, size = fields[11], fields[6]
        name = raw[pos + 110:pos + 110 + namesize - 1]
        if name == b"TRAILER!!!":
            break
        inos.append(fields[0])
        nlinks.append((stat.S_ISDIR(fields[1]), fields[4]))
        pos += (110 + namesize + 3) & ~3
        pos += (size + 3) & ~3
    assert inos == list(range(1, len(inos) + 1))
    assert all(n == (2 if is_dir else 1) for is_dir, n in nlinks)
