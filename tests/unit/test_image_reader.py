"""The image reader walks concatenated segments like the kernel: images built here with
GNU cpio and the real compressor CLIs in the layouts dracut and initramfs-tools use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkkdumprd.errors import UsageError
from mkkdumprd.image.compression import Compression, Detected, detect
from mkkdumprd.image.reader import ImageFormatError, normalise, read_file, read_members
from mkkdumprd.image.spec import ImageSpec, data_entry, dir_entry, symlink_entry
from mkkdumprd.image.writer import write_image

COMPRESSORS = {
    "gzip": ["gzip", "-9n"],
    "bzip2": ["bzip2"],
    "lzma": ["lzma"],
    "xz": ["xz", "--check=crc32"],
    "zstd": ["zstd", "-q", "-19"],
    "lz4": ["lz4", "-l", "-q"],
}


def gnu_cpio(root: Path, fmt: str = "newc") -> bytes:
    """`find . | cpio -o -H newc` as dracut and initramfs-tools run it (512-byte padded)."""
    names = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True,
                           check=True).stdout
    names = "\n".join(sorted(names.split())) + "\n"
    return subprocess.run(["cpio", "-o", "-H", fmt, "--quiet"], cwd=root, input=names.encode(),
                          capture_output=True, check=True).stdout


def compress(tool: str, data: bytes) -> bytes:
    return subprocess.run(COMPRESSORS[tool], input=data, capture_output=True,
                          check=True).stdout


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    early = tmp_path / "early"
    (early / "kernel/x86/microcode").mkdir(parents=True)
    (early / "kernel/x86/microcode/AuthenticAMD.bin").write_bytes(b"amd ucode")
    early2 = tmp_path / "early2"
    (early2 / "kernel/x86/microcode").mkdir(parents=True)
    (early2 / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(b"intel ucode")
    main = tmp_path / "main"
    (main / "usr/bin").mkdir(parents=True)
    (main / "usr/bin/busybox").write_bytes(os.urandom(70000))
    (main / "usr/bin/busybox").chmod(0o755)
    (main / "bin").symlink_to("usr/bin")
    (main / "init").write_text("#!/bin/sh\nexec /bin/sh\n")
    (main / "init").chmod(0o755)
    return early, early2, main


@pytest.mark.parametrize("tool", list(COMPRESSORS))
def test_dracut_layout_early_cpio_then_compressed_main(
    tmp_path: Path, trees: tuple[Path, Path, Path], tool: str
) -> None:
    early, _, main = trees
    img = tmp_path / "initrd.img"
    img.write_bytes(gnu_cpio(early) + compress(tool, gnu_cpio(main)))
    members = read_members(img)
    seg0 = [m for m in members if m.segment == 0]
    seg1 = [m for m in members if m.segment == 1]
    assert {m.compression for m in seg0} == {"none"}
    assert {m.compression for m in seg1} == {tool}
    assert "/kernel/x86/microcode/AuthenticAMD.bin" in [m.path for m in seg0]
    paths = [m.path for m in seg1]
    assert paths == ["/", "/bin", "/init", "/usr", "/usr/bin", "/usr/bin/busybox"]
    link = next(m for m in seg1 if m.path == "/bin")
    assert (link.kind, link.target) == ("symlink", "usr/bin")
    bb = next(m for m in seg1 if m.path == "/usr/bin/busybox")
    assert (bb.kind, bb.mode, bb.size) == ("file", 0o755, 70000)
    assert read_file(img, "/usr/bin/busybox") == (main / "usr/bin/busybox").read_bytes()
    assert read_file(img, "kernel/x86/microcode/AuthenticAMD.bin") == b"amd ucode"


def test_initramfs_tools_layout_several_early_archives(
    tmp_path: Path, trees: tuple[Path, Path, Path]
) -> None:
    early, early2, main = trees
    img = tmp_path / "initrd.img"
    img.write_bytes(gnu_cpio(early) + gnu_cpio(early2) + compress("zstd", gnu_cpio(main)))
    members = read_members(img)
    assert sorted({(m.segment, m.compression) for m in members}) == [
        (0, "none"), (1, "none"), (2, "zstd")]
    assert read_file(img, "/kernel/x86/microcode/GenuineIntel.bin") == b"intel ucode"
    assert read_file(img, "/init") == b"#!/bin/sh\nexec /bin/sh\n"


def test_segments_after_a_compressed_one_are_read(
    tmp_path: Path, trees: tuple[Path, Path, Path]
) -> None:
    early, early2, main = trees
    img = tmp_path / "odd.img"
    # The kernel accepts any order: compressed, padding, plain, another compressor.
    img.write_bytes(compress("zstd", gnu_cpio(early)) + b"\0" * 8 + gnu_cpio(early2)
                    + compress("xz", gnu_cpio(main)))
    segs = sorted({(m.segment, m.compression) for m in read_members(img)})
    assert segs == [(0, "zstd"), (1, "none"), (2, "xz")]
    assert read_file(img, "/kernel/x86/microcode/AuthenticAMD.bin") == b"amd ucode"
    assert read_file(img, "/usr/bin/busybox") == (main / "usr/bin/busybox").read_bytes()


def test_last_copy_of_a_path_wins(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    for d, text in ((a, "first"), (b, "second")):
        d.mkdir()
        (d / "conf").write_text(text)
    img = tmp_path / "img"
    img.write_bytes(gnu_cpio(a) + compress("gzip", gnu_cpio(b)))
    assert read_file(img, "/conf") == b"second"


def test_hard_links_report_the_group_size_and_content(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "gzip").write_bytes(b"same program")
    os.link(root / "gzip", root / "gunzip")
    (root / "other").write_text("x")
    img = tmp_path / "img"
    img.write_bytes(gnu_cpio(root) + compress("gzip", gnu_cpio(root)))
    members = read_members(img)
    sizes = {(m.segment, m.path): m.size for m in members if m.kind == "file"}
    assert sizes == {(s, p): n for s in (0, 1)
                     for p, n in (("/gunzip", 12), ("/gzip", 12), ("/other", 1))}
    # GNU cpio stores the data once, with the last name of the group.
    assert read_file(img, "/gunzip") == b"same program"
    assert read_file(img, "/gzip") == b"same program"


def test_not_an_initramfs(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world, not an image")
    with pytest.raises(ImageFormatError, match="is not an initramfs"):
        read_members(junk)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ImageFormatError, match="is empty or holds only NUL padding"):
        read_members(empty)
    empty.write_bytes(b"\0" * 512)
    with pytest.raises(ImageFormatError, match="is empty or holds only NUL padding"):
        read_members(empty)
    with pytest.raises(UsageError, match="does not exist"):
        read_members(tmp_path / "missing")
    with pytest.raises(UsageError, match="is a directory"):
        read_members(tmp_path)


def test_damaged_images_give_one_sentence(tmp_path: Path, trees: tuple[Path, Path, Path]
                                          ) -> None:
    _, _, main = trees
    whole = compress("zstd", gnu_cpio(main))
    cut = tmp_path / "cut"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageFormatError, match="zstd stream at offset 0 is truncated"):
        read_members(cut)
    odc = tmp_path / "odc"
    odc.write_bytes(gnu_cpio(main, fmt="odc"))
    with pytest.raises(ImageFormatError, match=r"old \(odc\) cpio"):
        read_members(odc)
    trailing = tmp_path / "trailing"
    trailing.write_bytes(gnu_cpio(main) + b"garbage!")
    with pytest.raises(ImageFormatError, match="junk at offset"):
        read_members(trailing)


def test_read_file_errors(tmp_path: Path, trees: tuple[Path, Path, Path]) -> None:
    _, _, main = trees
    img = tmp_path / "img"
    img.write_bytes(gnu_cpio(main))
    with pytest.raises(UsageError, match="/nope is not in"):
        read_file(img, "/nope")
    with pytest.raises(UsageError, match="is a dir, not a regular file"):
        read_file(img, "/usr")


def test_detect_by_magic_as_the_kernel_does() -> None:
    assert detect(b"\x28\xb5\x2f\xfd\x00") is Detected.ZSTD
    assert detect(b"\xfd7zXZ\x00\x00") is Detected.XZ
    assert detect(b"\x1f\x8b\x08") is Detected.GZIP
    assert detect(b"BZh9") is Detected.BZIP2
    assert detect(b"\x02\x21\x4c\x18") is Detected.LZ4
    assert detect(b"\x89LZO\x00") is Detected.LZO
    assert detect(b"\x5d\x00\x00\x80") is Detected.LZMA
    assert detect(b"070701") is None


def test_normalise() -> None:
    assert normalise(".") == "/"
    assert normalise("./bin/sh") == "/bin/sh"
    assert normalise("bin//sh") == "/bin/sh"
    assert normalise("/etc/x") == "/etc/x"


_names = st.text(alphabet="abcdefgh._-", min_size=1, max_size=8).filter(
    lambda s: s not in (".", ".."))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(st.lists(_names, min_size=1, max_size=3).map(tuple),
                          st.binary(max_size=300), max_size=12),
    links=st.dictionaries(_names, _names, max_size=3),
    compression=st.sampled_from(list(Compression)),
)
def test_written_images_read_back_exactly(
    tmp_path: Path, files: dict[tuple[str, ...], bytes], links: dict[str, str],
    compression: Compression,
) -> None:
    spec = ImageSpec()
    dirs = {p[:i] for p in files for i in range(1, len(p))}
    wanted: dict[str, bytes] = {}
    for parts, body in files.items():
        if parts in dirs:
            continue  # a path cannot be both a file and a directory
        path = "/f/" + "/".join(parts)
        spec.add(data_entry(path, body, "data", mode=0o640))
        wanted[path] = body
    for name, target in links.items():
        spec.add(symlink_entry(f"/l/{name}", target, "link"))
    spec.add(dir_entry("/d", "empty dir", mode=0o700))
    img = tmp_path / f"img-{compression.value}"
    write_image(spec, img, compression=compression)
    members = read_members(img)
    assert [m.path for m in members] == [str(e.path) for e in spec.complete()]
    by_path = {m.path: m for m in members}
    for e in spec.complete():
        m = by_path[str(e.path)]
        assert (m.kind, m.mode, m.target, m.uid, m.gid) == (e.kind.value, e.mode, e.target, 0, 0)
    for path, body in wanted.items():
        assert read_file(img, path) == body
