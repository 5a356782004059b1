"""modules.d/busybox's check: applets missing from busybox's NUL-separated name table are
named, present ones are not, and a name only at the file's edges (no NUL on one side) does
not count."""

from __future__ import annotations

from pathlib import Path

from mkkdumprd.assemble.hooks import BuildContext, load_hooks
from mkkdumprd.assemble.moduledef import load_module
from mkkdumprd.assemble.target import ResolvedTarget
from mkkdumprd.config.model import KdumpConfig, TargetKind
from mkkdumprd.host import Host
from mkkdumprd.resources import data_dir


def _check(root: Path, applets: tuple[str, ...]) -> list[str]:
    hooks = load_hooks(load_module(data_dir("modules.d") / "busybox"))
    assert hooks.check is not None
    ctx = BuildContext(
        config=KdumpConfig(source="/etc/kdump.conf"),
        target=ResolvedTarget(TargetKind.LOCAL, "/dev/vda1", "ext4", "/var/crash"),
        kver="6.1.0", arch="x86_64", sysroot=Host(root), machine=Host(root), hostonly=False,
        module=load_module(data_dir("modules.d") / "busybox"), active=(), applets=applets)
    return hooks.check(ctx)


def _busybox(root: Path, data: bytes) -> None:
    exe = root / "bin/busybox"
    exe.parent.mkdir(parents=True)
    exe.write_bytes(data)
    exe.chmod(0o755)


def test_lacking_applets_are_named(tmp_path: Path) -> None:
    _busybox(tmp_path, b"dd\0\x7fELF\0[\0[[\0cat\0sh\0mount\0sync\0tail")
    assert _check(tmp_path, ("cat", "mount", "sync")) == []
    (warning,) = _check(tmp_path, ("cat", "dd", "tail", "mkdir", "mount"))
    # dd and tail sit at the file's edges, outside any NUL pair: not applet names
    assert "seems to lack the applets dd, tail, mkdir;" in warning


def test_names_outside_the_table_still_count(tmp_path: Path) -> None:
    """The table is a shortcut: a NUL-delimited name elsewhere in the file counts as before."""
    _busybox(tmp_path, b"x\0ip\0[\0[[\0cat\0mount\0\0sh\0sync\0tail")
    assert _check(tmp_path, ("cat", "ip", "sync", "mount")) == []
    (warning,) = _check(tmp_path, ("cat", "tail", "mkdir", "x"))
    assert "seems to lack the applets tail, mkdir, x;" in warning
    _busybox(tmp_path / "no-table", b"x\0cat\0sh\0end")
    assert _check(tmp_path / "no-table", ("cat",)) == []
    (warning,) = _check(tmp_path / "no-table", ("cat", "end"))
    assert "seems to lack the applets end;" in warning
