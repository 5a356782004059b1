"""Decoding a host file stored gzip/xz/zstd-compressed (kernel modules, firmware): the one
decoder, used by the module index (.modinfo, the arch check) and by the image writer.

Its output is bounded: a module tree is read as root, but a crafted `.ko.zst` of a few KB can
claim gigabytes, so anything that decodes to more than `limit` is refused, not decoded.
"""

from __future__ import annotations

import lzma
import zlib

import zstandard

from mkkdumprd.image.spec import Codec

# No kernel module or firmware file decodes to anything near this (the largest Debian
# modules, with BTF, are tens of MiB); past it the file is damaged or a bomb.
DECODE_MAX = 512 << 20


class DecodeError(ValueError):
    """The bytes are not a complete stream of the codec, or decode to more than the limit."""


def decode(raw: bytes, codec: Codec, limit: int = DECODE_MAX) -> bytes:
    """The plain bytes of `raw` stored with `codec`, at most `limit` of them."""
    if codec is Codec.NONE:
        out = raw
    else:
        try:
            out = _decode(raw, codec, limit)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as exc:
            raise DecodeError(str(exc)) from None
    if len(out) > limit:
        raise DecodeError(f"it decodes to more than {limit >> 20} MiB")
    return out


def _decode(raw: bytes, codec: Codec, limit: int) -> bytes:
    if codec is Codec.ZSTD:
        # Frames written by `zstd --no-content-size` or streaming writers carry no size;
        # the stream reader takes both, and several frames.
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        data: bytes = reader.read(limit + 1)
        return data
    if codec is Codec.XZ:
        xz = lzma.LZMADecompressor()
        out = xz.decompress(raw, max_length=limit + 1)
        complete = xz.eof
    else:
        gz = zlib.decompressobj(wbits=31)   # gzip header and trailer
        out = gz.decompress(raw, limit + 1)
        complete = gz.eof
    if not complete and len(out) <= limit:
        raise DecodeError("the compressed stream is cut short")
    return out
