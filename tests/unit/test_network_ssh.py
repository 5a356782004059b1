"""ssh argv assembly with hostile values: quoted once for ssh's argv, once for the remote shell.

The capture image's own remote commands run through the rendered target.sh in
test_build_templates.py (test_ssh_dump_through_a_remote_shell)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.errors import UsageError
from mkkdumprd.network import ssh_command as sc

HOSTILE = "/var/crash/it's a $(touch /tmp/pwned); `id` \"x\" & y\n*"


def test_target_parsing() -> None:
    assert sc.parse_target("root@dump.example.org") == sc.SshTarget("root", "dump.example.org")
    t = sc.parse_target("kdump@2001:db8::1:2:3:4", port=2222)
    assert (t.host, t.port, t.destination) == ("2001:db8::1:2:3:4", 2222, "kdump@2001:db8::1:2:3:4")
    assert sc.parse_target("u@[fd00::1]").host == "fd00::1"
    for bad in ("dump.example.org", "@host", "-oProxyCommand=x@host", "root@-oProxy=x",
                "root@host;id", "root@ho st", "ro ot@host", "root@"):
        with pytest.raises(UsageError, match="ssh target"):
            sc.parse_target(bad)
    with pytest.raises(UsageError, match="port"):
        sc.parse_target("root@h", port=70000)


def test_ssh_argv_has_strict_options_and_one_remote_word() -> None:
    t = sc.parse_target("root@10.0.2.100", port=2222)
    argv = [*sc.ssh_argv(t, "/root/.ssh/kdump_id", "/root/.ssh/known_hosts", connect_timeout=7),
            sc.mkdir_command(HOSTILE)]
    assert argv[:-2] == [
        "ssh", "-i", "/root/.ssh/kdump_id", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/root/.ssh/known_hosts",
        "-o", "ConnectTimeout=7", "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4", "-p", "2222",
    ]
    assert argv[-2] == "root@10.0.2.100"
    # what the remote shell sees: exactly mkdir -p -- HOSTILE
    assert shlex.split(argv[-1]) == ["mkdir", "-p", "--", HOSTILE]


def test_remote_commands_survive_a_real_shell(tmp_path: Path) -> None:
    target = str(tmp_path / "d $(touch PWNED) 'q'; `x`")
    # run it the way sshd does: the login shell gets the command line as one string
    script = " && ".join([sc.mkdir_command(target), sc.remote(["touch", "--", target + "/f"])])
    subprocess.run(["sh", "-c", script], check=True, cwd=tmp_path, capture_output=True)
    assert (Path(target) / "f").is_file()
    assert not (tmp_path / "PWNED").exists()


def test_dump_commands_in_a_hostile_directory(tmp_path: Path) -> None:
    """The capture script's remote side: "$d" is set from the build-time quoted path and
    the <ip>-<date> name, "$n" to the bytes sent, as target.sh does, then each command runs
    as sshd runs it. The vmcore is renamed only when it holds "$n" bytes."""
    path = str(tmp_path / "it's $(touch PWNED) `x` \"q\"\n*")
    name = "10.0.2.15-2026-01-02-03:04:05"
    c = sc.dump_commands()
    assert "conv=fsync" in c.send_vmcore

    def run(command: str, data: bytes = b"", sent: str = "", check: bool = True) -> int:
        prefix = f"d={sc.remote_dir_prefix(path)}{name} && n={sent} && "
        return subprocess.run(["sh", "-c", prefix + command], input=data, check=check,
                              cwd=tmp_path, stderr=subprocess.DEVNULL).returncode

    run(c.mkdir)
    run(c.send_dmesg, b"dmesg")
    run(c.keep_dmesg)
    run(c.send_vmcore, b"flattened")
    dump = Path(path) / name
    for wrong in ("8", "10", ""):
        assert run(c.keep_vmcore, sent=wrong, check=False) != 0
        assert (dump / "vmcore-incomplete").exists()
    run(c.keep_vmcore, sent="9")
    assert {f.name: f.read_bytes() for f in dump.iterdir()} == {
        "vmcore-dmesg.txt": b"dmesg", "vmcore.flat": b"flattened"}
    assert {f.stat().st_mode & 0o777 for f in dump.iterdir()} == {0o600}
    assert not list(tmp_path.rglob("PWNED"))


def test_known_hosts_lines() -> None:
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7 host@box"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7"
    assert sc.known_hosts_line("10.0.2.100", 22, pub) == f"10.0.2.100 {key}"
    assert sc.known_hosts_line("fd00::1", 2222, pub) == f"[fd00::1]:2222 {key}"
    scan = "dump.example.org ecdsa-sha2-nistp256 AAAAE2Vj"
    assert sc.known_hosts_line("dump.example.org", 22, scan) == scan
    with pytest.raises(UsageError):
        sc.known_hosts_line("h", 22, "garbage")
