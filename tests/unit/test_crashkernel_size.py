"""memparse as lib/cmdline.c does it, and the size spellings we print."""

from __future__ import annotations

import pytest

from mkkdumprd.crashkernel.size import format_size, memparse, parse_size
from mkkdumprd.human_size import human_size as human

K, M, G = 1 << 10, 1 << 20, 1 << 30


@pytest.mark.parametrize(("text", "value", "end"), [
    ("1024", 1024, 4),
    ("1k", K, 2), ("1K", K, 2),
    ("1m", M, 2), ("512M", 512 * M, 4),
    ("1g", G, 2), ("2G", 2 * G, 2),
    ("1t", 1 << 40, 2), ("1T", 1 << 40, 2),
    ("1p", 1 << 50, 2), ("1P", 1 << 50, 2),
    ("1e", 1 << 60, 2), ("1E", 1 << 60, 2),
    ("0x10", 16, 4), ("0X10", 16, 4), ("0x10M", 16 * M, 5), ("0xfF", 255, 4),
    ("010", 8, 3), ("0400000000", 64 * M, 10),
    ("08", 0, 1),            # octal stops at the 8
    ("0x", 0, 1),            # no hex digit after 0x: base 8, reads "0"
    ("0", 0, 1),
    ("64M@16M", 64 * M, 3),
    ("12Q", 12, 2),          # unknown suffix: not consumed
    ("18446744073709551616", 0, 20),   # wraps modulo 2^64 as in the kernel
    ("16E", 0, 3),                     # 16 << 60 wraps too
])
def test_memparse(text: str, value: int, end: int) -> None:
    assert memparse(text) == (value, end)


@pytest.mark.parametrize("text", ["", "abc", "-1", "+1", " 1"])
def test_memparse_without_digits_consumes_nothing(text: str) -> None:
    assert memparse(text) == (0, 0)


def test_memparse_steps_over_a_suffix_even_without_digits() -> None:
    # lib/cmdline.c: memparse() switches on *endptr after simple_strtoull() whether or not
    # it read a digit, so "M" is 0 ending after the M (the C oracle test checks this too).
    assert memparse("M") == (0, 1)
    assert memparse("kx") == (0, 1)


def test_memparse_from_an_offset() -> None:
    assert memparse("crashkernel=64M", 12) == (64 * M, 15)


def test_parse_size_is_strict() -> None:
    assert parse_size("2G") == 2 * G
    assert parse_size(" 0x1000 ") == 4096
    for bad in ("", "2GB", "1.5G", "abc", "-1"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)


@pytest.mark.parametrize(("n", "text"), [
    (0, "0"), (100, "100"), (K, "1K"), (192 * M, "192M"), (G, "1G"), (1536 * M, "1536M"),
    (1 << 40, "1T"), (256 * M + 100, str(256 * M + 100)),
])
def test_format_size_is_exact_and_round_trips(n: int, text: str) -> None:
    assert format_size(n) == text
    assert parse_size(text) == n


def test_human() -> None:
    assert human(192 * M) == "192 MiB"
    assert human(1536 * M) == "1.5 GiB"
    assert human(512) == "512 B"
    assert human(3 * M + 300 * 1024) == "3.3 MiB" and human(4 * M) == "4 MiB"
    assert human(1536 * M, "MiB") == "1536 MiB" and human(1535, "KiB") == "1 KiB"
