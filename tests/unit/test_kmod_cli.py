"""`mkkdumprd deps modules` on a fake tree under a sysroot."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mkkdumprd.cli import main
from tests.support.fake_kmod import write_builtin, write_module

KVER = "6.6.0-test"


def _tree(root: Path) -> Path:
    kmoddir = root / "lib" / "modules" / KVER
    write_module(kmoddir, "kernel/lib/base.ko.xz", {"depends": ""})
    write_module(kmoddir, "kernel/fs/fsx.ko", {"depends": "base", "alias": "fs-fsx"})
    write_builtin(kmoddir, ["ext4"])
    conf = root / "etc" / "modprobe.d"
    conf.mkdir(parents=True)
    (conf / "x.conf").write_text("alias my-fs fsx\n")
    return kmoddir


def test_prints_paths_in_load_order(tmp_path: Path) -> None:
    kmoddir = _tree(tmp_path)
    r = CliRunner().invoke(main, ["deps", "modules", "--kver", KVER, "--sysroot",
                                  str(tmp_path), "fs-fsx", "ext4"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [str(kmoddir / "kernel/lib/base.ko.xz"),
                                     str(kmoddir / "kernel/fs/fsx.ko")]
    r = CliRunner().invoke(main, ["deps", "modules", "--kver", KVER, "--kmoddir",
                                  str(kmoddir), "my-fs"])
    assert r.exit_code == 2  # --kmoddir alone: the host's modprobe.d, not the sysroot's


def test_sysroot_modprobe_d_applies(tmp_path: Path) -> None:
    _tree(tmp_path)
    args = ["deps", "modules", "--kver", KVER, "--sysroot", str(tmp_path)]
    assert CliRunner().invoke(main, [*args, "my-fs"]).exit_code == 0
    assert CliRunner().invoke(main, [*args, "--no-modprobe-d", "my-fs"]).exit_code == 2


def test_unknown_name_exit_2_with_near_matches(tmp_path: Path) -> None:
    _tree(tmp_path)
    r = CliRunner().invoke(main, ["deps", "modules", "--kver", KVER, "--sysroot",
                                  str(tmp_path), "fsy"])
    assert r.exit_code == 2
    assert "'fsy'" in r.output and "did you mean fsx" in r.output and KVER in r.output
    assert "Traceback" not in r.output


def test_missing_module_dir_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["deps", "modules", "--kver", "1.2.3", "--sysroot",
                                  str(tmp_path), "x"])
    assert r.exit_code == 2
    assert "1.2.3" in r.output and f"{tmp_path}/lib/modules/1.2.3" in r.output
