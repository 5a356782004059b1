"""Kernel image formats: bzImage header, arm64/riscv Image, ELF PT_LOAD, gzip and zboot."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from mkkdumprd.loader import kernel_image as ki
from tests.support.kernel_images import M, arm64_image, elf64, riscv_image, zboot


def test_debian_bzimage_header_matches_a_hand_read(vmlinuz: Path) -> None:
    path = vmlinuz
    raw = path.read_bytes()
    hdr = ki.bzimage_header(raw)
    assert hdr is not None
    assert hdr.init_size == struct.unpack_from("<I", raw, 0x260)[0]
    assert hdr.version == struct.unpack_from("<H", raw, 0x206)[0] >= 0x020C
    assert hdr.cmdline_size == struct.unpack_from("<I", raw, 0x238)[0]
    assert hdr.kexec_problem() is None
    info = ki.runtime_size(path)
    assert info.format == ki.BZIMAGE and info.runtime_size == hdr.init_size


@pytest.mark.parametrize(("patch", "problem"), [
    ((0x206, struct.pack("<H", 0x020B)), "boot protocol 2.11 < 2.12"),
    ((0x211, b"\x00"), "LOADED_HIGH"),
    ((0x236, struct.pack("<H", 0x0)), "XLF_KERNEL_64"),
    ((0x236, struct.pack("<H", 0x1)), "XLF_CAN_BE_LOADED_ABOVE_4G"),
])
def test_bzimage_probe_rules(tmp_path: Path, vmlinuz: Path, patch: tuple[int, bytes],
                            problem: str) -> None:
    with vmlinuz.open("rb") as f:
        raw = bytearray(f.read(0x1000))
    off, data = patch
    raw[off:off + len(data)] = data
    hdr = ki.bzimage_header(bytes(raw))
    assert hdr is not None and problem in (hdr.kexec_problem() or "")
    p = tmp_path / "vmlinuz"
    p.write_bytes(bytes(raw))
    with pytest.raises(ki.ImageFormatError, match="cannot be loaded by kexec_file_load"):
        ki.prepare(p, ("bzImage",), "x86_64")


def test_arm64_and_riscv_headers() -> None:
    a = ki.identify(arm64_image(image_size=41 * M))
    assert (a.format, a.runtime_size) == (ki.ARM64_IMAGE, 41 * M)
    r = ki.identify(riscv_image(image_size=31 * M))
    assert (r.format, r.runtime_size) == (ki.RISCV_IMAGE, 31 * M)


@pytest.mark.parametrize("big", [False, True])
def test_elf_pt_load_memsz(big: bool) -> None:
    info = ki.identify(elf64([10 * M, 3 * M, 123], big=big))
    assert info.format == ki.ELF
    assert info.runtime_size == 13 * M + 123       # the PT_NOTE is not counted


def test_elf_memsz_matches_pyelftools_on_a_real_binary() -> None:
    path = Path("/bin/ls").resolve()
    with path.open("rb") as f:
        want = sum(s["p_memsz"] for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD")
    assert ki.elf_load_size(path.read_bytes()) == want


@pytest.mark.parametrize("comp", ["gzip", "zstd", "lzma", "xz"])
def test_zboot_unwrap(tmp_path: Path, comp: str) -> None:
    inner = arm64_image(image_size=37 * M, body=os.urandom(64 * 1024))
    p = tmp_path / "vmlinuz.efi"
    p.write_bytes(zboot(inner, comp))
    assert ki.identify(p.read_bytes()).format == ki.ZBOOT
    data, how = ki.unwrap(p.read_bytes())
    assert data == inner and how == f"unwrapped from EFI zboot ({comp})"
    info = ki.runtime_size(p)
    assert (info.format, info.inner, info.runtime_size) == (ki.ZBOOT, ki.ARM64_IMAGE, 37 * M)
    prep = ki.prepare(p, ("arm64-image", "gzip", "zboot"), "aarch64")
    try:
        assert prep.memfd and prep.how == how
        assert os.pread(prep.fd, len(inner) + 10, 0) == inner
        assert os.readlink(f"/proc/self/fd/{prep.fd}").startswith("/memfd:mkkdumprd-kernel")
    finally:
        os.close(prep.fd)


def test_gzip_image_unwrap_to_memfd(tmp_path: Path) -> None:
    inner = arm64_image(body=os.urandom(10000))
    p = tmp_path / "Image.gz"
    p.write_bytes(gzip.compress(inner))
    prep = ki.prepare(p, ("arm64-image", "gzip", "zboot"), "aarch64")
    try:
        assert prep.how == "gunzipped" and prep.info.format == ki.ARM64_IMAGE
        assert os.fstat(prep.fd).st_size == len(inner)
        assert os.pread(prep.fd, len(inner), 0) == inner
    finally:
        os.close(prep.fd)


def test_unknown_zboot_compression_is_explained(tmp_path: Path) -> None:
    raw = bytearray(zboot(arm64_image(), "gzip"))
    raw[24:56] = b"lz4".ljust(32, b"\0")
    with pytest.raises(ki.ImageFormatError, match="'lz4' is not supported"):
        ki.unwrap(bytes(raw))


def test_corrupt_gzip(tmp_path: Path) -> None:
    p = tmp_path / "Image.gz"
    p.write_bytes(gzip.compress(arm64_image())[:200])
    with pytest.raises(ki.ImageFormatError, match="corrupt"):
        ki.prepare(p, ("arm64-image", "gzip"), "aarch64")


@pytest.mark.parametrize(("data", "formats", "arch", "msg"), [
    # x86 takes a bzImage only, never an ELF vmlinux
    (elf64([M]), ("bzImage",), "x86_64", "ELF vmlinux; kexec_file_load on x86_64 takes bzImage"),
    # ppc64le: ELF only
    (arm64_image(), ("elf",), "ppc64le", "takes elf"),
    # a gzip'd kernel on an arch that cannot take it
    (gzip.compress(elf64([M])), ("elf",), "ppc64le", "cannot take"),
    # aarch64: a zboot that holds something that is not an arm64 Image
    (zboot(elf64([M]), "gzip"), ("arm64-image", "gzip", "zboot"), "aarch64",
     "unwraps to ELF vmlinux"),
])
def test_wrong_format_per_arch(tmp_path: Path, data: bytes, formats: tuple[str, ...],
                               arch: str, msg: str) -> None:
    p = tmp_path / "k"
    p.write_bytes(data)
    with pytest.raises(ki.ImageFormatError, match=msg):
        ki.prepare(p, formats, arch)


def test_plain_files_open_read_only(tmp_path: Path) -> None:
    p = tmp_path / "vmlinux"
    p.write_bytes(elf64([5 * M]))
    prep = ki.prepare(p, ("elf",), "ppc64le")
    try:
        assert not prep.memfd and prep.how == "as is"
        assert os.path.samefile(f"/proc/self/fd/{prep.fd}", p)
    finally:
        os.close(prep.fd)
    # s390: the image loader's probe takes anything
    q = tmp_path / "image"
    q.write_bytes(b"\0" * 8192)
    prep = ki.prepare(q, ("elf", "s390-image"), "s390x")
    os.close(prep.fd)
    assert prep.info.format == ki.S390_IMAGE
