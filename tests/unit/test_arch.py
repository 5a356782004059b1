"""arch/<name>.toml: every arch loads, carries the kernel's facts, and names normalise."""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd import arch as arch_mod
from mkkdumprd.arch import ARCHES, host_arch, load_arch, normalise
from mkkdumprd.cli import main
from mkkdumprd.crashkernel.parse import parse_crashkernel
from mkkdumprd.errors import ShippedDataError, UsageError
from mkkdumprd.resources import data_dir

# Syscall numbers from the arch syscall tables (reference/debian-suse-and-kernel.md C.2).
SYSCALLS = {"x86_64": 320, "aarch64": 294, "riscv64": 294, "ppc64le": 382, "s390x": 381}


def test_every_arch_file_is_listed_and_loads() -> None:
    files = sorted(p.stem for p in data_dir("arch").glob("*.toml"))
    assert files == sorted(ARCHES)
    for name in ARCHES:
        info = load_arch(name)
        assert info.name == name
        assert info.syscall_nr == SYSCALLS[name]
        assert info.formats and info.kernel_names
        assert all("{kver}" in n for n in info.kernel_names)
        assert "crashkernel" in info.cmdline_remove
        assert "elfcorehdr" in info.cmdline_remove
        assert not any(w.startswith("elfcorehdr") for w in info.cmdline_append)
        assert info.page_size in (4096, 65536)


def test_high_low_facts_match_the_kernel() -> None:
    mib = 1 << 20
    assert load_arch("x86_64").default_low == 256 * mib
    assert load_arch("aarch64").default_low == 128 * mib
    assert load_arch("riscv64").default_low == 128 * mib
    assert not load_arch("ppc64le").high_low and not load_arch("s390x").high_low
    assert load_arch("x86_64").align == 16 * mib
    assert load_arch("aarch64").align == 2 * mib


def test_default_tables_are_valid_kernel_syntax() -> None:
    for name in ARCHES:
        info = load_arch(name)
        # A table must evaluate at every RAM size it covers, like the kernel will.
        res = parse_crashkernel(f"crashkernel={info.default_table}", 16 << 30, info)
        assert res.size > 0


def test_every_table_number_has_a_source_comment() -> None:
    for name in ARCHES:
        text = (data_dir("arch") / f"{name}.toml").read_text()
        table = tomllib.loads(text)["crashkernel"]["default_table"]
        for entry in table.split(","):
            rng = entry.split(":")[0]
            # The comment block above default_table names each range it justifies.
            assert rng.split("-")[0] in text.split("default_table")[0], (name, entry)


@pytest.mark.parametrize(("machine", "want"), [
    ("x86_64", "x86_64"), ("amd64", "x86_64"), ("AMD64", "x86_64"), ("arm64", "aarch64"),
    ("aarch64", "aarch64"), ("ppc64le", "ppc64le"), ("ppc64el", "ppc64le"),
    ("s390x", "s390x"), ("riscv64", "riscv64"),
])
def test_host_arch_normalises_the_machine_name(monkeypatch: pytest.MonkeyPatch,
                                              machine: str, want: str) -> None:
    real = os.uname()
    monkeypatch.setattr(arch_mod.os, "uname", lambda: os.uname_result(
        (real.sysname, real.nodename, real.release, real.version, machine)))
    assert host_arch() == want


def test_aliases_load_the_same_data() -> None:
    assert load_arch("amd64") == load_arch("x86_64")
    assert load_arch("arm64") == load_arch("aarch64")
    assert normalise("ppc64el") == "ppc64le"


def test_unknown_arch_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"unknown architecture 'mips'.*x86_64"):
        load_arch("mips")


@pytest.fixture
def arch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the shipped arch files that load_arch reads instead."""
    copy = tmp_path / "arch"
    shutil.copytree(data_dir("arch"), copy)
    monkeypatch.setattr("mkkdumprd.resources.data_dir", lambda name: tmp_path / name)
    load_arch.cache_clear()
    yield copy
    load_arch.cache_clear()


def _edit(path: Path, pattern: str, replacement: str) -> None:
    text, n = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
    assert n == 1, pattern
    path.write_text(text)


@pytest.mark.parametrize(("pattern", "replacement", "message"), [
    (r"^syscall_nr = .*$", "", "missing key kexec.syscall_nr"),
    (r"^\[estimate\]$", "[estimates]", "missing key estimate.kernel_fallback"),
    (r"^page_size = .*$", 'page_size = "4k"', "estimate.page_size: expected int, got '4k'"),
    (r"^align = .*$", 'align = "16Q"', "crashkernel.align: '16Q' is not a size"),
    (r"^formats = .*$", "formats = [1]", "kexec.formats: expected a list of strings"),
    (r"^name = .*$", "name = ", "invalid TOML"),
])
def test_malformed_arch_file_names_file_and_key(arch_dir: Path, pattern: str,
                                                replacement: str, message: str) -> None:
    path = arch_dir / "x86_64.toml"
    _edit(path, pattern, replacement)
    with pytest.raises(ShippedDataError) as exc:
        load_arch("x86_64")
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)


def test_malformed_arch_file_is_one_line_and_exit_4(arch_dir: Path) -> None:
    _edit(arch_dir / "x86_64.toml", r"^syscall_nr = .*$", "")
    r = CliRunner().invoke(main, ["crashkernel", "parse", "--arch", "x86_64", "--mem", "4G",
                                  "crashkernel=256M"])
    assert r.exit_code == 4
    assert r.stderr.splitlines() == [
        f"mkkdumprd: error: {arch_dir / 'x86_64.toml'}: missing key kexec.syscall_nr (this file "
        "ships with mkkdumprd: reinstall it or report a bug)"]
