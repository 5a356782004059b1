"""Synthetic kernel images in the formats the loader reads: arm64 and riscv Image headers,
EFI zboot wrappers (gzip, zstd, lzma, xz) and ELF files with chosen PT_LOAD sizes."""

from __future__ import annotations

import gzip
import lzma
import os
import struct

import zstandard

M = 1 << 20


def arm64_image(image_size: int = 40 * M, body: bytes = b"") -> bytes:
    # booting.rst: code0, code1, text_offset, image_size, flags, res2..4, magic, res5
    head = struct.pack("<IIQQQQQQII", 0x91005A4D, 0x14000000, 0, image_size, 0xA,
                       0, 0, 0, 0x644D5241, 0x40)
    assert len(head) == 64
    return head + (body or os.urandom(4096))


def riscv_image(image_size: int = 30 * M) -> bytes:
    head = struct.pack("<IIQQQIIQQII", 0, 0, 0x200000, image_size, 0, 0x2, 0, 0,
                       0x5643534952, 0x05435352, 0)
    assert len(head) == 64
    return head + b"\0" * 1024


def zboot(payload: bytes, comp: str) -> bytes:
    compressed = {
        "gzip": lambda d: gzip.compress(d),
        "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
        "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
        "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
    }[comp](payload)
    # zboot-header.S: "MZ", pad, "zimg", payload offset, payload size, 2 x u32, type[32]
    # The kernel's *_with_size commands append the unpacked size as LE32.
    data = compressed + struct.pack("<I", len(payload))
    off = 0x200
    head = (b"MZ\0\0" + b"zimg" + struct.pack("<II", off, len(data)) + b"\0" * 8
            + comp.encode().ljust(32, b"\0"))
    return head.ljust(off, b"\0") + data


def elf64(loads: list[int], big: bool = False) -> bytes:
    e = ">" if big else "<"
    phnum = len(loads) + 1
    ident = b"\x7fELF" + bytes([2, 2 if big else 1, 1]) + b"\0" * 9
    hdr = ident + struct.pack(e + "HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, phnum,
                              64, 0, 0)
    phs = b""
    for memsz in loads:
        phs += struct.pack(e + "IIQQQQQQ", 1, 7, 0x1000, 0, 0, 0x100, memsz, 0x1000)
    phs += struct.pack(e + "IIQQQQQQ", 4, 4, 0, 0, 0, 0x10, 0x7777777, 4)   # PT_NOTE
    return hdr + phs + b"\0" * 256
