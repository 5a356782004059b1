"""Recognise kernel image formats, read their runtime size, and unwrap what the kernel refuses.

Standard library only (zstd payloads import `zstandard` lazily, the one exception).
Header layouts:
- x86 bzImage: Documentation/arch/x86/boot.rst, setup header at 0x1f1 ("HdrS" at 0x202,
  version 0x206, loadflags 0x211, xloadflags 0x236, cmdline_size 0x238, init_size 0x260).
- arm64 Image: Documentation/arch/arm64/booting.rst (image_size at 16, "ARM\\x64" at 56).
- riscv Image: Documentation/arch/riscv/boot-image-header.rst (image_size 16, "RSC\\x05" 56).
- EFI zboot: drivers/firmware/efi/libstub/zboot-header.S ("MZ", "zimg" at 4, payload offset
  and size LE u32 at 8/12, compression name at 24).
- ELF: PT_LOAD program headers, p_memsz summed.
"""

from __future__ import annotations

import gzip
import lzma
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.input_file import open_input, read_input

BZIMAGE = "bzImage"
ARM64_IMAGE = "arm64-image"
RISCV_IMAGE = "riscv-image"
ZBOOT = "zboot"
GZIP = "gzip"
ELF = "elf"
S390_IMAGE = "s390-image"
UNKNOWN = "unknown"

_LOADED_HIGH = 0x1
_XLF_KERNEL_64 = 0x1
_XLF_CAN_BE_LOADED_ABOVE_4G = 0x2
_PT_LOAD = 1


# A kernel file (vmlinux with debug info included) is at most a few hundred MB; the cap
# keeps --kernel /dev/zero or a FIFO from being read forever (input_file.py).
KERNEL_MAX = 1 << 30


class ImageFormatError(ValueError):
    """The file is not a kernel this arch's kexec_file_load accepts (or can be made to)."""


@dataclass(frozen=True)
class BzImageHeader:
    version: int
    loadflags: int
    xloadflags: int
    cmdline_size: int
    init_size: int
    setup_sects: int

    def kexec_problem(self) -> str | None:
        """Why kexec_bzImage64_ops' probe would refuse it, or None."""
        if self.version < 0x020C:
            return f"boot protocol {self.version >> 8}.{self.version & 0xff} < 2.12"
        if not self.loadflags & _LOADED_HIGH:
            return "not loaded high (LOADED_HIGH unset)"
        if not self.xloadflags & _XLF_KERNEL_64:
            return "no 64-bit entry point (XLF_KERNEL_64 unset)"
        if not self.xloadflags & _XLF_CAN_BE_LOADED_ABOVE_4G:
            return "cannot be loaded above 4 GiB (XLF_CAN_BE_LOADED_ABOVE_4G unset)"
        return None


@dataclass(frozen=True)
class KernelInfo:
    format: str
    runtime_size: int | None      # memory the running kernel occupies, when the header says
    detail: str                   # e.g. "bzImage, boot protocol 2.15" or "zboot (zstd)"
    inner: str | None = None      # format of the unwrapped payload (gzip/zboot)


def _u16(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def _u32(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def _u64(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<Q", b, o)[0])


def bzimage_header(head: bytes) -> BzImageHeader | None:
    if len(head) < 0x268 or head[0x202:0x206] != b"HdrS" or _u16(head, 0x1FE) != 0xAA55:
        return None
    version = _u16(head, 0x206)
    return BzImageHeader(
        version=version,
        loadflags=head[0x211],
        xloadflags=_u16(head, 0x236) if version >= 0x020C else 0,
        cmdline_size=_u32(head, 0x238) if version >= 0x0206 else 255,
        init_size=_u32(head, 0x260) if version >= 0x020A else 0,
        setup_sects=head[0x1F1] or 4,
    )


def _is_arm64_image(b: bytes) -> bool:
    return len(b) >= 64 and b[56:60] == b"ARM\x64"


def _is_riscv_image(b: bytes) -> bool:
    return len(b) >= 64 and b[56:60] == b"RSC\x05"


def _is_zboot(b: bytes) -> bool:
    return len(b) >= 64 and b[0:2] == b"MZ" and b[4:8] == b"zimg"


def elf_load_size(b: bytes) -> int | None:
    """Sum of PT_LOAD p_memsz, or None when `b` is not an ELF file."""
    if len(b) < 64 or b[:4] != b"\x7fELF":
        return None
    is64 = b[4] == 2
    end = "<" if b[5] == 1 else ">"
    if is64:
        phoff = struct.unpack_from(end + "Q", b, 0x20)[0]
        phentsize, phnum = struct.unpack_from(end + "HH", b, 0x36)
    else:
        phoff = struct.unpack_from(end + "I", b, 0x1C)[0]
        phentsize, phnum = struct.unpack_from(end + "HH", b, 0x2A)
    total = 0
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + phentsize > len(b):
            break
        p_type = struct.unpack_from(end + "I", b, off)[0]
        if p_type != _PT_LOAD:
            continue
        memsz = (struct.unpack_from(end + "Q", b, off + 40)[0] if is64
                 else struct.unpack_from(end + "I", b, off + 20)[0])
        total += int(memsz)
    return total


def zboot_payload(b: bytes) -> tuple[str, bytes]:
    """(compression name, compressed payload) of an EFI zboot image."""
    off, size = _u32(b, 8), _u32(b, 12)
    comp = b[24:56].split(b"\0", 1)[0].decode("ascii", "replace")
    if off + size > len(b) or size == 0:
        raise ImageFormatError("zboot header points past the end of the file")
    return comp, b[off : off + size]


def decompress(comp: str, data: bytes) -> bytes:
    """Decompress one stream, ignoring trailing bytes (zboot appends a LE32 size)."""
    if comp == "gzip":
        d = zlib.decompressobj(wbits=31)
        return d.decompress(data)
    if comp in ("lzma", "xz"):
        fmt = lzma.FORMAT_ALONE if comp == "lzma" else lzma.FORMAT_XZ
        return lzma.LZMADecompressor(format=fmt).decompress(data)
    if comp == "zstd":
        try:
            import zstandard
        except ImportError:
            raise ImageFormatError(
                "this kernel's zboot payload is zstd-compressed and the python zstandard "
                "module is missing; install python3-zstandard or pass an unpacked Image"
            ) from None
        out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return out
    raise ImageFormatError(
        f"zboot payload compressed with {comp!r} is not supported (gzip, lzma, xz, zstd are);"
        " pass an unpacked Image with --kernel"
    )


def identify(b: bytes) -> KernelInfo:
    """What `b` (the start of a file, or all of it for wrapped formats) is."""
    bz = bzimage_header(b)
    if bz is not None:
        return KernelInfo(BZIMAGE, bz.init_size or None,
                          f"bzImage, boot protocol {bz.version >> 8}.{bz.version & 0xff}")
    if _is_zboot(b):
        comp = b[24:56].split(b"\0", 1)[0].decode("ascii", "replace")
        return KernelInfo(ZBOOT, None, f"EFI zboot ({comp})")
    if _is_arm64_image(b):
        return KernelInfo(ARM64_IMAGE, _u64(b, 16) or None, "arm64 Image")
    if _is_riscv_image(b):
        return KernelInfo(RISCV_IMAGE, _u64(b, 16) or None, "riscv Image")
    if b[:2] == b"\x1f\x8b":
        return KernelInfo(GZIP, None, "gzip-compressed")
    size = elf_load_size(b)
    if size is not None:
        return KernelInfo(ELF, size, "ELF vmlinux")
    return KernelInfo(UNKNOWN, None, "unknown format")


def unwrap(b: bytes) -> tuple[bytes, str]:
    """The raw kernel inside a gzip or zboot wrapper, and a word on what was done."""
    info = identify(b)
    if info.format == GZIP:
        try:
            return gzip.decompress(b), "gunzipped"
        except (OSError, EOFError, zlib.error) as exc:
            raise ImageFormatError(f"gzip data is corrupt: {exc}") from None
    if info.format == ZBOOT:
        comp, payload = zboot_payload(b)
        try:
            return decompress(comp, payload), f"unwrapped from EFI zboot ({comp})"
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise ImageFormatError(f"zboot {comp} payload is corrupt: {exc}") from None
    return b, "as is"


def runtime_size(path: Path) -> KernelInfo:
    """Identify a kernel file, unwrapping gzip/zboot to read the inner header's size."""
    with open_input(path, KERNEL_MAX) as f:
        head = f.read(4096)
    info = identify(head)
    if info.format == ELF:
        info = identify(read_input(path, KERNEL_MAX))
    elif info.format in (GZIP, ZBOOT):
        inner, how = unwrap(read_input(path, KERNEL_MAX))
        inner_info = identify(inner[:4096])
        return KernelInfo(info.format, inner_info.runtime_size,
                          f"{inner_info.detail}, {how}", inner=inner_info.format)
    return info


@dataclass(frozen=True)
class PreparedKernel:
    fd: int              # read-only fd to hand to the syscall (a memfd when unwrapped)
    info: KernelInfo
    how: str             # "as is", "gunzipped", "unwrapped from EFI zboot (zstd)"
    memfd: bool


def prepare(path: Path, formats: tuple[str, ...], arch: str) -> PreparedKernel:
    """Open `path` in the form this arch's kexec_file_load accepts; raises ImageFormatError.

    The caller closes `.fd`. Wrapped kernels are decompressed into an anonymous memfd, so
    nothing is written to disk.
    """
    data = read_input(path, KERNEL_MAX)
    info = identify(data)
    if info.format in (GZIP, ZBOOT):
        if info.format not in formats:
            raise ImageFormatError(
                f"{path} is {info.detail}, which kexec_file_load on {arch} cannot take; "
                "pass the unpacked kernel with --kernel")
        inner, how = unwrap(data)
        inner_info = identify(inner)
        if inner_info.format not in formats or inner_info.format in (GZIP, ZBOOT):
            raise ImageFormatError(
                f"{path} unwraps to {inner_info.detail}, not a kernel {arch} can load")
        fd = os.memfd_create("mkkdumprd-kernel", os.MFD_CLOEXEC)
        try:
            os.write(fd, inner)
            os.lseek(fd, 0, os.SEEK_SET)
        except OSError:
            os.close(fd)
            raise
        return PreparedKernel(fd, inner_info, how, memfd=True)
    accepted = set(formats)
    if "s390-image" in accepted and info.format == UNKNOWN:
        info = KernelInfo(S390_IMAGE, None, "s390 image")
    if info.format not in accepted:
        raise ImageFormatError(
            f"{path} is {info.detail}; kexec_file_load on {arch} takes "
            f"{' or '.join(formats)}; pass such a kernel with --kernel")
    if info.format == BZIMAGE:
        bz = bzimage_header(data)
        problem = bz.kexec_problem() if bz else None
        if problem:
            raise ImageFormatError(f"{path} cannot be loaded by kexec_file_load: {problem}")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return PreparedKernel(fd, info, "as is", memfd=False)
