"""Per-arch loader facts that depend on the target's glibc version and the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.elf.platform import ldso_platform, power_set
from mkkdumprd.host import Host

HASWELL = ("fpu sse2 ssse3 cx16 lahf_lm popcnt sse4_1 sse4_2 avx avx2 bmi1 bmi2 f16c fma abm "
           "movbe xsave")
AVX512 = HASWELL + " avx512f avx512bw avx512cd avx512dq avx512vl"


def fake_root(tmp_path: Path, glibc: str, vendor: str, flags: str) -> Host:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(
        f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {flags}\n\n")
    ld = tmp_path / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    ld.parent.mkdir(parents=True)
    ld.write_bytes(b"\x7fELF...ld.so (GNU libc) stable release version " + glibc.encode()
                   + b".\n")
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64/ld-linux-x86-64.so.2").symlink_to(
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    return Host(tmp_path)


@pytest.mark.parametrize("glibc,vendor,flags,platform,first_legacy,hwcaps", [
    ("2.36", "AuthenticAMD", AVX512, "x86_64", "tls/x86_64/x86_64", 3),
    ("2.36", "GenuineIntel", HASWELL, "haswell", "tls/haswell/x86_64", 2),
    ("2.36", "GenuineIntel", AVX512, "haswell", "tls/haswell/avx512_1/x86_64", 3),
    ("2.36", "GenuineIntel", AVX512 + " avx512er avx512pf", "xeon_phi",
     "tls/xeon_phi/x86_64", 3),
    ("2.31", "GenuineIntel", HASWELL, "haswell", "tls/haswell/x86_64", 0),
    ("2.37", "GenuineIntel", HASWELL, "x86_64", None, 2),
])
def test_x86_64_platform_and_subdirs(tmp_path: Path, glibc: str, vendor: str, flags: str,
                                     platform: str, first_legacy: str | None,
                                     hwcaps: int) -> None:
    view = fake_root(tmp_path, glibc, vendor, flags)
    t = ldso_platform(view, "EM_X86_64", 64, "/lib64/ld-linux-x86-64.so.2")
    assert t.platform == platform
    assert (t.legacy_subdirs[0] if t.legacy_subdirs else None) == first_legacy
    assert len(t.hwcaps) == hwcaps
    assert t.lib == "lib/x86_64-linux-gnu"


def test_power_set_order() -> None:
    # Three components as glibc 2.36 prints them under LD_DEBUG=libs.
    assert power_set(["a", "b", "tls"]) == ("tls/b/a", "tls/b", "tls/a", "tls", "b/a", "b", "a")
    assert power_set(["tls"]) == ("tls",)
    assert len(power_set(["a", "b", "c", "tls"])) == 15
