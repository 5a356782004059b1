"""`mkkdumprd deps libs`: output and errors as users and scripts see them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from tests.support.elf_fixtures import build_lib, build_prog, ldd, needs_gcc, runpath
from tests.support.sysroot import make_sysroot


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.skipif(not os.path.exists("/usr/bin/ls"), reason="needs /usr/bin/ls")
def test_prints_loader_paths_one_per_line() -> None:
    code, out, _ = run("deps", "libs", "/usr/bin/ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "/lib64/ld-linux-x86-64.so.2"
    assert all(ln.startswith("/") for ln in lines)
    assert {os.path.realpath(ln) for ln in lines} == ldd(Path("/usr/bin/ls"))
    code, out2, _ = run("deps", "libs", "--realpath", "/usr/bin/ls")
    assert out2.splitlines() == [os.path.realpath(ln) for ln in lines]


@needs_gcc
def test_missing_library_is_one_sentence_exit_2(tmp_path: Path) -> None:
    lib = build_lib(tmp_path / "gone/libgone.so.3")
    prog = build_prog(tmp_path / "prog", (lib,), runpath(str(tmp_path / "gone")))
    lib.unlink()
    code, out, err = run("deps", "libs", str(prog))
    assert code == 2 and out == ""
    assert err.startswith("mkkdumprd: error: ") and err.count("\n") == 1
    assert str(prog) in err and "libgone.so.3" in err and "Traceback" not in err


def test_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = run("deps", "libs", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "txt").write_text("plain\n")
    code, _, err = run("deps", "libs", str(tmp_path / "txt"))
    assert code == 2 and "neither an ELF binary nor a #! script" in err
    code, _, err = run("deps", "libs", "--sysroot", str(tmp_path / "nodir"), "/bin/ls")
    assert code == 2


def test_sysroot_relative_file(tmp_path: Path) -> None:
    make_sysroot(tmp_path, ["/usr/bin/ls"])
    code, out, err = run("deps", "libs", "--sysroot", str(tmp_path), "usr/bin/ls")
    assert code == 0, err
    assert "/lib/x86_64-linux-gnu/libc.so.6" in out.splitlines()
