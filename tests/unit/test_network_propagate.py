"""propagate's pieces: the ssh-copy-id remote command, df parsing, the space warning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mkkdumprd.cli.propagate_cmd import install_command, parse_df_available, space_warning
from mkkdumprd.errors import OperationError, UsageError


def test_install_command_appends_once_with_private_modes(tmp_path: Path) -> None:
    key = "ssh-ed25519 AAAAC3Nza it's $(touch PWNED) `id`"
    cmd = install_command(key)
    for _ in range(2):
        subprocess.run(["sh", "-c", cmd], check=True, env={"HOME": str(tmp_path)},
                       cwd="/")
    ak = tmp_path / ".ssh/authorized_keys"
    assert ak.read_text() == key + "\n"
    assert ak.stat().st_mode & 0o077 == 0 and (tmp_path / ".ssh").stat().st_mode & 0o077 == 0
    assert not (tmp_path / "PWNED").exists() and not Path("/PWNED").exists()
    with pytest.raises(UsageError):
        install_command("a\nb")


def test_df_and_space_warning() -> None:
    out = ("Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
           "/dev/vda1         10255636   8023400   1692408      83% /\n")
    assert parse_df_available(out) == 1692408
    with pytest.raises(OperationError):
        parse_df_available("garbage")
    w = space_warning(1692408, 4 * 1024 * 1024, "root@h:/var/crash")
    assert w is not None and "1652 MiB free" in w and "4096 MiB of RAM" in w
    assert space_warning(8 << 20, 4 << 20, "x") is None
