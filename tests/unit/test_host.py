"""HostView: paths of the described system, symlinks followed inside its root only."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.host import HostView


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libc.so.6").write_text("libc")
    os.symlink("usr/lib", tmp_path / "lib")                      # merged /usr, relative
    os.symlink("/usr/lib/x86_64-linux-gnu/libc.so.6", tmp_path / "usr/lib/libc-abs")
    os.symlink("../../../../../etc/shadow", tmp_path / "usr/lib/escape")
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    return tmp_path


def test_links_are_followed_inside_the_root(root: Path) -> None:
    view = HostView(root)
    real, links = view.resolve_links("/lib/x86_64-linux-gnu/libc.so.6")
    assert real == PurePosixPath("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert links == [(PurePosixPath("/lib"), "usr/lib")]
    assert view.read_text("/lib/x86_64-linux-gnu/libc.so.6") == "libc"


def test_absolute_targets_are_taken_relative_to_the_root(root: Path) -> None:
    real, links = HostView(root).resolve_links("/lib/libc-abs")
    assert real == PurePosixPath("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert [str(p) for p, _ in links] == ["/lib", "/usr/lib/libc-abs"]


def test_dotdot_never_climbs_above_the_root(root: Path) -> None:
    view = HostView(root)
    assert view.resolve("/usr/lib/escape") == PurePosixPath("/etc/shadow")
    assert not view.exists("/usr/lib/escape")  # the host's /etc/shadow is not reached


def test_symlink_loops_are_an_error(root: Path) -> None:
    with pytest.raises(OSError, match="too many levels of symbolic links"):
        HostView(root).resolve("/loop-a/x")


def test_missing_tails_are_kept(root: Path) -> None:
    assert HostView(root).resolve("/lib/nope/x") == PurePosixPath("/usr/lib/nope/x")
