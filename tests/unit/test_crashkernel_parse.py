"""crashkernel= evaluated by the rules of kernel/crash_reserve.c, one case per rule."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.crashkernel.parse import CrashkernelInvalid, Reservation, parse_crashkernel

K, M, G = 1 << 10, 1 << 20, 1 << 30

# (arch, RAM, cmdline, (size, offset, high, low, cma))
VALID = [
    # simple form, memparse suffixes in any case, hex and octal
    ("x86_64", 2 * G, "crashkernel=256M", (256 * M, None, False, None, None)),
    ("x86_64", 2 * G, "crashkernel=256m", (256 * M, None, False, None, None)),
    ("x86_64", 2 * G, "crashkernel=262144k", (256 * M, None, False, None, None)),
    ("x86_64", 4 * G, "crashkernel=1g", (G, None, False, None, None)),
    ("x86_64", 2 * G, "crashkernel=0x10000000", (256 * M, None, False, None, None)),
    ("x86_64", 2 * G, "crashkernel=0400000000", (64 * M, None, False, None, None)),
    ("x86_64", 2 << 40, "crashkernel=1T", (1 << 40, None, False, None, None)),
    # @offset; "@" with nothing usable means base 0, i.e. "kernel chooses"
    ("x86_64", 2 * G, "crashkernel=64M@16M", (64 * M, 16 * M, False, None, None)),
    ("x86_64", 2 * G, "crashkernel=64M@0x1000000", (64 * M, 16 * M, False, None, None)),
    ("x86_64", 2 * G, "crashkernel=64M@", (64 * M, None, False, None, None)),
    # the word is found anywhere (strstr), surrounded by other words
    ("x86_64", 2 * G, "ro quiet crashkernel=128M splash", (128 * M, None, False, None, None)),
    ("x86_64", 2 * G, "foo.crashkernel=96M", (96 * M, None, False, None, None)),
    # last word wins
    ("x86_64", 2 * G, "crashkernel=128M crashkernel=64M", (64 * M, None, False, None, None)),
    ("x86_64", 4 * G, "crashkernel=1G-:128M crashkernel=64M", (64 * M, None, False, None, None)),
    # plain beats ,high
    ("x86_64", 8 * G, "crashkernel=64M crashkernel=512M,high",
     (64 * M, None, False, None, None)),
    ("x86_64", 8 * G, "crashkernel=512M,high crashkernel=64M",
     (64 * M, None, False, None, None)),
    # ,high with the per-arch default low
    ("x86_64", 8 * G, "crashkernel=512M,high", (512 * M, None, True, 256 * M, None)),
    ("aarch64", 8 * G, "crashkernel=512M,high", (512 * M, None, True, 128 * M, None)),
    ("riscv64", 8 * G, "crashkernel=512M,high", (512 * M, None, True, 128 * M, None)),
    # x86_64's default low grows with a bigger swiotlb: max(swiotlb + 8M, 256M)
    ("x86_64", 8 * G, "swiotlb=262144 crashkernel=1G,high", (G, None, True, 520 * M, None)),
    ("x86_64", 8 * G, "swiotlb=65536,force crashkernel=1G,high", (G, None, True, 256 * M, None)),
    # explicit ,low, last ,low wins, 0 disables it
    ("x86_64", 8 * G, "crashkernel=512M,high crashkernel=96M,low",
     (512 * M, None, True, 96 * M, None)),
    ("x86_64", 8 * G, "crashkernel=32M,low crashkernel=512M,high crashkernel=96M,low",
     (512 * M, None, True, 96 * M, None)),
    ("aarch64", 8 * G, "crashkernel=512M,high crashkernel=0,low",
     (512 * M, None, True, 0, None)),
    ("x86_64", 8 * G, "crashkernel=1G,high crashkernel=512M,high",
     (512 * M, None, True, 256 * M, None)),
    # ,cma is additional, on arches with the generic reservation only
    ("x86_64", 8 * G, "crashkernel=256M crashkernel=1G,cma", (256 * M, None, False, None, G)),
    ("aarch64", 8 * G, "crashkernel=512M,high crashkernel=1G,cma",
     (512 * M, None, True, 128 * M, G)),
    ("ppc64le", 8 * G, "crashkernel=256M crashkernel=1G,cma", (256 * M, None, False, None, None)),
    # a malformed ,cma word: the kernel ignores the error but keeps the parsed number
    ("x86_64", 8 * G, "crashkernel=256M crashkernel=64Mx,cma",
     (256 * M, None, False, None, 64 * M)),
    # ranges: start inclusive, end exclusive, first match wins, open end, @offset
    ("x86_64", 2 * G, "crashkernel=2G-4G:192M", (192 * M, None, False, None, None)),
    ("x86_64", 4 * G, "crashkernel=1G-:128M,2G-:256M", (128 * M, None, False, None, None)),
    ("x86_64", G, "crashkernel=512M-:192M", (192 * M, None, False, None, None)),
    ("x86_64", 4 * G, "crashkernel=1G-:128M@32M", (128 * M, 32 * M, False, None, None)),
    ("x86_64", G, "crashkernel=4G-8G:256M,1G-2G:512M", (512 * M, None, False, None, None)),
    ("x86_64", 16 * G, "crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M",
     (256 * M, None, False, None, None)),
    # RAM is rounded up to 128 MiB for matching (firmware keeps a little)...
    ("x86_64", 2047 * M, "crashkernel=1G-2G:128M,2G-:256M", (256 * M, None, False, None, None)),
    ("x86_64", 1920 * M, "crashkernel=1G-2G:128M,2G-:256M", (128 * M, None, False, None, None)),
    # ...and the range size check uses the rounded value, the final one the real value
    ("x86_64", 2047 * M, "crashkernel=1G-:2000M", (2000 * M, None, False, None, None)),
    # ppc64 and s390 have no ,high/,low: a plain word works as usual
    ("ppc64le", 4 * G, "crashkernel=2G-4G:384M,4G-:512M", (512 * M, None, False, None, None)),
    ("s390x", 4 * G, "crashkernel=384M-:128M", (128 * M, None, False, None, None)),
]


@pytest.mark.parametrize(("arch", "ram", "cmdline", "want"), VALID)
def test_valid(arch: str, ram: int, cmdline: str,
               want: tuple[int, int | None, bool, int | None, int | None]) -> None:
    got = parse_crashkernel(cmdline, ram, load_arch(arch))
    assert (got.size, got.offset, got.high, got.low, got.cma) == want


# (arch, RAM, cmdline, the kernel's reason)
INVALID = [
    ("x86_64", 2 * G, "quiet splash", "no crashkernel="),
    ("x86_64", 2 * G, "crashkernel=", "memory value expected"),
    ("x86_64", 2 * G, "crashkernel=auto", "memory value expected"),
    ("x86_64", 2 * G, "crashkernel=256Mx", "unrecognized char: x"),
    ("x86_64", 2 * G, "crashkernel=256M,foo", "unrecognized char: ,"),
    ("x86_64", 2 * G, "crashkernel=1G-2G", "unrecognized char: -"),
    ("x86_64", 2 * G, "crashkernel=0", "resulted in zero bytes"),
    # size >= RAM (the unrounded RAM)
    ("x86_64", 2 * G, "crashkernel=2G", "not smaller than system RAM"),
    ("x86_64", 1999 * M, "crashkernel=1G-:2000M", "not smaller than system RAM"),
    # suffix-only words
    ("x86_64", 8 * G, "crashkernel=64M,low", "no crashkernel=SIZE or crashkernel=SIZE,high"),
    ("x86_64", 8 * G, "crashkernel=64M,cma", "no crashkernel=SIZE or crashkernel=SIZE,high"),
    ("aarch64", 8 * G, "crashkernel=64M,low crashkernel=1G,cma", "no crashkernel=SIZE"),
    ("x86_64", 8 * G, "crashkernel=0,high", "reserves nothing"),
    ("x86_64", 8 * G, "crashkernel=512M,high crashkernel=64Mx,low", "unrecognized char: x"),
    ("x86_64", 8 * G, "crashkernel=512Mx,high", "unrecognized char: x"),
    # no ,high/,low on ppc64 and s390
    ("ppc64le", 8 * G, "crashkernel=512M,high", ",high and ,low are not available on ppc64le"),
    ("s390x", 8 * G, "crashkernel=512M,high crashkernel=128M,low", "not available on s390x"),
    # ranges
    ("x86_64", 4 * G, "crashkernel=2G-4G:192M", "resulted in zero bytes"),   # end exclusive
    ("x86_64", 512 * M, "crashkernel=1G-2G:128M", "resulted in zero bytes"),
    ("x86_64", 8 * G, "crashkernel=4G-2G:128M", "end <= start"),
    ("x86_64", 8 * G, "crashkernel=4G-4G:128M", "end <= start"),
    ("x86_64", G, "crashkernel=512M-:1G", "invalid size"),
    # every range parsed up to the match is size-checked, matching or not
    ("x86_64", 512 * M, "crashkernel=1G-2G:128M,4G-:1G", "invalid size"),
    ("x86_64", 8 * G, "crashkernel=1G:128M", "'-' expected"),
    ("x86_64", 8 * G, "crashkernel=1G-2G-3G:128M", "':' expected"),
    ("x86_64", 8 * G, "crashkernel=1G-2G:", "Memory value expected"),
    ("x86_64", 8 * G, "crashkernel=-2G:128M", "Memory value expected"),
    ("x86_64", 8 * G, "crashkernel=1G-:128M@", "Memory value expected after '@'"),
    # the last word is the one evaluated, even when an earlier one was fine
    ("x86_64", 2 * G, "crashkernel=128M crashkernel=bogus", "memory value expected"),
]


@pytest.mark.parametrize(("arch", "ram", "cmdline", "reason"), INVALID)
def test_invalid(arch: str, ram: int, cmdline: str, reason: str) -> None:
    with pytest.raises(CrashkernelInvalid) as exc:
        parse_crashkernel(cmdline, ram, load_arch(arch))
    assert reason in str(exc.value)


def test_json_shape() -> None:
    r = Reservation(size=512 * M, offset=None, high=True, low=256 * M, cma=None)
    assert r.as_json() == {"size": 512 * M, "offset": None, "high": 512 * M,
                           "low": 256 * M, "cma": None}


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_cli_json_several_words() -> None:
    code, out, _ = _cli("crashkernel", "parse", "--arch", "x86_64", "--mem", "8G", "--json",
                        "--", "ro", "crashkernel=512M,high", "crashkernel=1G,cma")
    assert code == 0
    assert json.loads(out) == {"size": 512 * M, "offset": None, "high": 512 * M,
                               "low": 256 * M, "cma": G}


def test_cli_json_offset() -> None:
    code, out, _ = _cli("crashkernel", "parse", "--arch", "aarch64", "--mem", "4g", "--json",
                        "--", "crashkernel=1G-:128M@0x40000000")
    assert code == 0
    assert json.loads(out) == {"size": 128 * M, "offset": G, "high": None, "low": None,
                               "cma": None}


def test_cli_human() -> None:
    code, out, _ = _cli("crashkernel", "parse", "--arch", "x86_64", "--mem", "16G", "--",
                        "crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M")
    assert code == 0
    assert out.splitlines() == [
        f"256 MiB ({256 * M} bytes)",
        "(placed below 4 GiB when it fits; otherwise higher, plus 256 MiB low)"]
    code, out, _ = _cli("crashkernel", "parse", "--arch", "s390x", "--mem", "16G", "--",
                        "crashkernel=192M")
    assert out.splitlines() == [f"192 MiB ({192 * M} bytes)"]


def test_cli_warns_about_misaligned_offset() -> None:
    code, out, _ = _cli("crashkernel", "parse", "--arch", "aarch64", "--mem", "4G", "--",
                        "crashkernel=64M@0x100000")
    assert code == 0
    assert "not aligned to 2M" in out


@pytest.mark.parametrize("words", [["quiet"], ["crashkernel=2G-4G:192M"]])
def test_cli_invalid_exits_1_with_reason(words: list[str]) -> None:
    code, out, err = _cli("crashkernel", "parse", "--arch", "x86_64", "--mem", "4G", "--",
                          *words)
    assert code == 1
    assert out == ""
    assert err.startswith("mkkdumprd: error: the x86_64 kernel reserves nothing: ")


def test_cli_bad_mem_is_usage_error() -> None:
    code, _, err = _cli("crashkernel", "parse", "--arch", "x86_64", "--mem", "lots", "--",
                        "crashkernel=64M")
    assert code == 2
    assert "is not a size" in err
