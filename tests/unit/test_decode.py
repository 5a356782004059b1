"""The one decoder of compressed host files (kernel modules, firmware): exact, bounded."""

from __future__ import annotations

import gzip
import lzma

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkkdumprd.image.decode import DecodeError, decode
from mkkdumprd.image.spec import Codec
from tests.support.bounded import bounded_call

PACK = {
    Codec.GZIP: lambda b: gzip.compress(b, mtime=0),
    Codec.XZ: lambda b: lzma.compress(b, check=lzma.CHECK_CRC32),
    Codec.ZSTD: lambda b: zstandard.ZstdCompressor().compress(b),
    Codec.NONE: lambda b: b,
}
PLAIN = b"\x7fELF" + bytes(range(256)) * 64


@pytest.mark.parametrize("codec", list(Codec))
def test_round_trip(codec: Codec) -> None:
    assert decode(PACK[codec](PLAIN), codec) == PLAIN


def test_zstd_without_content_size_and_several_frames() -> None:
    c = zstandard.ZstdCompressor(write_content_size=False)
    assert decode(c.compress(b"ab") + c.compress(b"cd"), Codec.ZSTD) == b"abcd"


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.XZ])
def test_a_stream_cut_short_is_an_error(codec: Codec) -> None:
    packed = PACK[codec](PLAIN)
    with pytest.raises(DecodeError):
        decode(packed[: len(packed) // 2], codec)


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.XZ, Codec.ZSTD])
def test_a_bomb_is_refused_without_decoding_it(codec: Codec) -> None:
    # 64 MiB of zeros pack into a few KB; with a 1 MiB limit at most 1 MiB + 1 is decoded
    # (lzma's buffers peak near 10 MiB: far below the 64 an unbounded decode takes).
    bomb = PACK[codec](bytes(64 << 20))
    assert len(bomb) < 100_000
    with pytest.raises(DecodeError, match="more than 1 MiB"):
        bounded_call(decode, bomb, codec, 1 << 20, allowed=(), mem_cap=32 << 20)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([Codec.GZIP, Codec.XZ, Codec.ZSTD]),
       st.one_of(st.binary(max_size=512),
                 st.binary(max_size=64).map(lambda b: PACK[Codec.ZSTD](b * 1000)[:40]),
                 st.binary(max_size=64).map(lambda b: PACK[Codec.XZ](b * 1000)[:60])))
def test_fuzz_decode_gives_bytes_or_decode_error(codec: Codec, raw: bytes) -> None:
    bounded_call(decode, raw, codec, 1 << 20, allowed=(DecodeError,), mem_cap=16 << 20)
