"""`crashkernel apply` on fake roots: grubby, /etc/default/grub.d, /etc/kernel/cmdline."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.crashkernel import apply as ck
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host, Ran

BLS = """title Fedora Linux (6.8.5-301.fc40.x86_64)
version 6.8.5-301.fc40.x86_64
linux /vmlinuz-6.8.5-301.fc40.x86_64
initrd /initramfs-6.8.5-301.fc40.x86_64.img
options root=UUID=1234 ro rhgb quiet
grub_users $grub_users
"""


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["crashkernel", "apply", *args])
    return r.exit_code, r.stdout, r.stderr


def _never(cmd: Sequence[str], timeout: float | None) -> Ran:
    raise AssertionError(f"must not run {cmd}")


# -- grubby ------------------------------------------------------------------------------

@pytest.fixture
def fedora(tmp_path: Path) -> Path:
    _write(tmp_path, "/usr/sbin/grubby", "#!/bin/sh\nexit 99\n", 0o755)
    _write(tmp_path, "/boot/loader/entries/abc-6.8.5.conf", BLS)
    return tmp_path


def test_grubby_prints_the_command_and_diff_but_never_runs_it_off_root(fedora: Path) -> None:
    host = Host(fedora)
    plan = ck.plan_apply(host, "1G-4G:192M")
    assert plan.kind == "grubby"
    assert plan.command == ("/usr/sbin/grubby", "--update-kernel=ALL",
                            "--remove-args=crashkernel", "--args=crashkernel=1G-4G:192M")
    assert "+options root=UUID=1234 ro rhgb quiet crashkernel=1G-4G:192M" in plan.diff()
    msgs = ck.perform(plan, replace(host, run=_never))
    assert any("not running grubby" in m for m in msgs)
    assert (fedora / "boot/loader/entries/abc-6.8.5.conf").read_text() == BLS


def test_grubby_cli(fedora: Path) -> None:
    code, out, _ = _cli("--root", str(fedora), "--value", "256M")
    assert code == 0
    assert ("command: /usr/sbin/grubby --update-kernel=ALL --remove-args=crashkernel "
            "--args=crashkernel=256M") in out
    assert "not running grubby for a root other than /" in out
    assert (fedora / "boot/loader/entries/abc-6.8.5.conf").read_text() == BLS


def test_grubby_keeps_hand_set_value_unless_forced(fedora: Path) -> None:
    _write(fedora, "/boot/loader/entries/abc-6.8.5.conf",
           BLS.replace("quiet", "quiet crashkernel=512M"))
    plan = ck.plan_apply(Host(fedora), "256M")
    assert plan.command is None and not plan.needed
    assert plan.kept == ("/boot/loader/entries/abc-6.8.5.conf: crashkernel=512M",)
    forced = ck.plan_apply(Host(fedora), "256M", force=True)
    assert forced.command is not None
    assert "+options root=UUID=1234 ro rhgb quiet crashkernel=256M" in forced.diff()


def test_grubby_already_set_is_a_no_op(fedora: Path) -> None:
    _write(fedora, "/boot/loader/entries/abc-6.8.5.conf",
           BLS.replace("quiet", "quiet crashkernel=256M"))
    plan = ck.plan_apply(Host(fedora), "256M")
    assert not plan.needed and plan.notes == ("already set; nothing to do",)


def test_grubby_runs_on_the_live_root_through_the_runner(fedora: Path) -> None:
    # live=True stands for "root is /"; the runner is a recorder, so nothing runs.
    plan = ck.plan_apply(Host(fedora), "256M")
    ran: list[Sequence[str]] = []

    def record(cmd: Sequence[str], timeout: float | None) -> Ran:
        ran.append(cmd)
        return Ran(0, "", "")

    msgs = ck.perform(plan, Host(fedora, live=True, run=record))
    assert ran == [plan.command]
    assert msgs == [f"ran {' '.join(plan.command or ())}"]


# -- grub.d --------------------------------------------------------------------------------

@pytest.fixture
def debian(tmp_path: Path) -> Path:
    _write(tmp_path, "/etc/default/grub",
           'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n')
    (tmp_path / "etc/default/grub.d").mkdir()
    return tmp_path


def _grub_cmdline(root: Path) -> str:
    """What update-grub would see: /etc/default/grub, then grub.d/*.cfg, sourced by sh."""
    script = ('. "$1/etc/default/grub"; for f in "$1"/etc/default/grub.d/*.cfg; '
              'do [ -e "$f" ] && . "$f"; done; '
              'echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"')
    return subprocess.run(["sh", "-c", script, "sh", str(root)], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_grub_d_writes_our_file(debian: Path) -> None:
    code, out, _ = _cli("--root", str(debian), "--value", "1G-4G:192M,4G-:256M")
    assert code == 0
    assert "+++ b/etc/default/grub.d/mkkdumprd.cfg" in out
    assert "run `update-grub`" in out
    cfg = debian / "etc/default/grub.d/mkkdumprd.cfg"
    assert ('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT '
            'crashkernel=1G-4G:192M,4G-:256M"') in cfg.read_text()
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o644
    assert _grub_cmdline(debian) == "quiet crashkernel=1G-4G:192M,4G-:256M"
    # a second run changes nothing
    code, out, _ = _cli("--root", str(debian), "--value", "1G-4G:192M,4G-:256M")
    assert code == 0 and "already set" in out and "+++" not in out


def test_grub_d_default_value_is_the_arch_table(debian: Path) -> None:
    code, _, _ = _cli("--root", str(debian), "--arch", "aarch64")
    assert code == 0
    assert "crashkernel=1G-4G:256M,4G-64G:320M,64G-:576M" in \
        (debian / "etc/default/grub.d/mkkdumprd.cfg").read_text()


def test_grub_d_dry_run_writes_nothing(debian: Path) -> None:
    code, out, _ = _cli("--root", str(debian), "--value", "256M", "--dry-run")
    assert code == 0
    assert "+GRUB_CMDLINE_LINUX_DEFAULT=" in out and "dry run: nothing written" in out
    assert not (debian / "etc/default/grub.d/mkkdumprd.cfg").exists()


@pytest.mark.parametrize(("rel", "text"), [
    ("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet crashkernel=384M-:128M"\n'),
    ("/etc/default/grub.d/kdump-tools.cfg",
     'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=512M-:192M"\n'),
])
def test_grub_d_hand_set_value_is_kept_unless_forced(debian: Path, rel: str, text: str) -> None:
    _write(debian, rel, text)
    before = _grub_cmdline(debian)
    code, out, _ = _cli("--root", str(debian), "--value", "256M")
    assert code == 0
    assert "hand-set:" in out and "left alone (use --force)" in out
    assert not (debian / "etc/default/grub.d/mkkdumprd.cfg").exists()
    assert _grub_cmdline(debian) == before
    code, out, _ = _cli("--root", str(debian), "--value", "256M", "--force")
    assert code == 0
    assert (debian / rel.lstrip("/")).read_text() == text      # the user's file is untouched
    # ours is read last, so its word is the last on the line: the kernel takes it
    assert _grub_cmdline(debian).split()[-1] == "crashkernel=256M"


def test_commented_out_value_is_not_hand_set(debian: Path) -> None:
    _write(debian, "/etc/default/grub",
           '#GRUB_CMDLINE_LINUX_DEFAULT="crashkernel=1G"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    assert ck.plan_apply(Host(debian), "256M").changes


# -- /etc/kernel/cmdline ----------------------------------------------------------------------

def test_kernel_cmdline_adds_the_word(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/kernel/cmdline", "root=UUID=1 ro quiet\n", 0o600)
    code, out, _ = _cli("--root", str(tmp_path), "--value", "192M")
    assert code == 0
    assert "-root=UUID=1 ro quiet" in out and "+root=UUID=1 ro quiet crashkernel=192M" in out
    p = tmp_path / "etc/kernel/cmdline"
    assert p.read_text() == "root=UUID=1 ro quiet crashkernel=192M\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600      # the atomic write kept the mode


def test_kernel_cmdline_hand_set_and_force(tmp_path: Path) -> None:
    p = _write(tmp_path, "/etc/kernel/cmdline",
               "root=UUID=1 crashkernel=128M ro crashkernel=64M,low\n")
    plan = ck.plan_apply(Host(tmp_path), "192M")
    assert not plan.needed and len(plan.kept) == 2
    code, _, _ = _cli("--root", str(tmp_path), "--value", "192M", "--force")
    assert code == 0
    assert p.read_text() == "root=UUID=1 crashkernel=192M ro\n"


def test_kernel_cmdline_seeded_from_proc_cmdline(tmp_path: Path) -> None:
    _write(tmp_path, "/proc/cmdline", "BOOT_IMAGE=/vmlinuz-6.1 root=/dev/vda1 ro initrd=x\n")
    plan = ck.plan_apply(Host(tmp_path), "192M")
    assert plan.kind == "kernel-cmdline"
    assert plan.changes[0].old is None
    assert plan.changes[0].new == "root=/dev/vda1 ro crashkernel=192M\n"
    assert "--- /dev/null" in plan.diff()
    ck.perform(plan, Host(tmp_path, run=_never))
    assert (tmp_path / "etc/kernel/cmdline").read_text() == plan.changes[0].new


def test_no_boot_configuration_at_all(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="no boot configuration found"):
        ck.plan_apply(Host(tmp_path), "192M")
    code, _, err = _cli("--root", str(tmp_path), "--value", "192M")
    assert code == 1 and "no boot configuration found" in err


def test_invalid_value_is_refused(debian: Path) -> None:
    code, _, err = _cli("--root", str(debian), "--value", "lots")
    assert code == 2 and "crashkernel=lots: unexpected 'l' at character 1" in err
    code, _, err = _cli("--root", str(debian), "--arch", "ppc64le", "--value", "1G,high")
    assert code == 2 and "not available on ppc64le" in err


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/kernel/cmdline", "ro\n")
    ck.perform(ck.plan_apply(Host(tmp_path), "192M"), Host(tmp_path, run=_never))
    assert os.listdir(tmp_path / "etc/kernel") == ["cmdline"]


def test_grubby_ignores_commented_grub_defaults(fedora: Path) -> None:
    _write(fedora, "/etc/default/grub",
           '# GRUB_CMDLINE_LINUX="crashkernel=1G"\nGRUB_CMDLINE_LINUX="rhgb quiet"\n')
    plan = ck.plan_apply(Host(fedora), "256M")
    assert plan.kept == () and plan.command is not None
