"""`mkkdumprd propagate` against a real private sshd on 127.0.0.1 (no VM)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli.propagate_cmd import propagate
from mkkdumprd.errors import OperationError
from mkkdumprd.network import capture, ssh_command
from tests.vm.servers import SshServer

pytestmark = pytest.mark.slow


def test_propagate_creates_installs_records_and_logs_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # the remote login's $HOME (ssh-copy-id style `cd`) is this folder, whose
    # .ssh/authorized_keys the sshd also reads: root's real home is never touched
    extra = (f"SetEnv HOME={home}\n"
             f"AuthorizedKeysFile {tmp_path}/sshd/authorized_keys {home}/.ssh/authorized_keys\n")
    with SshServer(tmp_path / "sshd", extra_config=extra).start() as srv:
        assert srv.keys is not None
        monkeypatch.setenv("HOME", str(home))
        key = tmp_path / "keys/kdump_id"
        dump = tmp_path / "dumps; $(touch PWNED)"
        conf = tmp_path / "kdump.conf"
        conf.write_text(f"ssh root@127.0.0.1\nsshkey {key}\npath {dump}\n")
        args = ["-c", str(conf), "-p", str(srv.port), "-o", f"IdentityFile={srv.keys.client_key}"]

        r = CliRunner().invoke(propagate, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert key.exists() and f"created ssh key {key}" in r.output
        pub = key.with_name("kdump_id.pub").read_text().strip()
        assert (home / ".ssh/authorized_keys").read_text().splitlines() == [pub]
        assert dump.is_dir() and not (tmp_path / "PWNED").exists()
        # Debian's ssh_config hashes host names; the builder reads hashed entries too
        kh = (home / ".ssh/known_hosts").read_text()
        assert capture.known_host_keys(kh, "127.0.0.1", srv.port) == [
            " ".join(srv.keys.host_public.split()[:2])]

        # idempotent: the key is not added twice, the recorded host key is used as is
        r = CliRunner().invoke(propagate, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert (home / ".ssh/authorized_keys").read_text().splitlines() == [pub]

        # the capture kernel's login: the new key, batch mode, strict host key checking
        t = ssh_command.parse_target("root@127.0.0.1", port=srv.port)
        argv = [*ssh_command.ssh_argv(t, str(key), str(home / ".ssh/known_hosts")),
                ssh_command.remote(["true"])]
        done = subprocess.run(argv, capture_output=True, env={**os.environ}, timeout=60)
        assert done.returncode == 0, done.stderr


def test_propagate_fails_clearly_when_login_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with SshServer(tmp_path / "sshd").start() as srv:
        monkeypatch.setenv("HOME", str(home))
        conf = tmp_path / "kdump.conf"
        conf.write_text(f"ssh root@127.0.0.1\nsshkey {tmp_path}/k\npath /var/crash\n")
        # no usable identity for the installation login (BatchMode: no password prompt)
        args = ["-c", str(conf), "-p", str(srv.port), "-o", "BatchMode=yes",
                "-o", "IdentityFile=/dev/null", "-o", "IdentitiesOnly=yes"]
        with pytest.raises(OperationError, match=r"could not install the key on root@127\.0\.0\.1"):
            CliRunner().invoke(propagate, args, catch_exceptions=False)
