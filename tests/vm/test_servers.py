"""The VM tests' dump-target servers really start, serve on loopback, and stop by PID."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.network import ssh_command as sc
from tests.vm.servers import NfsServer, SshServer, port_open

pytestmark = pytest.mark.slow


def test_ganesha_listens_on_loopback_and_stops(tmp_path: Path) -> None:
    with NfsServer(tmp_path / "nfs").start() as srv:
        assert srv.running and port_open(srv.port)
        assert srv.export.is_dir() and not any(srv.export.iterdir())
        # only on 127.0.0.1: the socket table shows no wildcard or external bind
        ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
        mine = [line for line in ss.splitlines() if f"pid={srv.pid}," in line]
        local = [line.split()[3] for line in mine]
        assert local and all(a in (f"127.0.0.1:{srv.port}", f"[::ffff:127.0.0.1]:{srv.port}")
                             for a in local), mine
        assert srv.guestfwd(2049) == (
            f"tcp:10.0.2.100:2049-cmd:/bin/busybox nc 127.0.0.1 {srv.port}")
        pid = srv.pid
    assert not port_open(srv.port)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
        f"/proc/{pid}/status").read_text()


def test_sshd_strict_host_key_login_with_generated_known_hosts(tmp_path: Path) -> None:
    with SshServer(tmp_path / "ssh").start() as srv:
        assert srv.keys is not None
        kh = tmp_path / "known_hosts"
        kh.write_text(sc.known_hosts_line("127.0.0.1", srv.port, srv.keys.host_public) + "\n")
        target = sc.parse_target("root@127.0.0.1", port=srv.port)
        dump_dir = str(tmp_path / "dumps/it's $(touch PWNED); `id` x")
        dest = dump_dir + "/vmcore-incomplete"
        env = {**os.environ, "HOME": str(tmp_path)}   # no ~/.ssh of the machine involved

        def ssh(remote: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
            argv = [*sc.ssh_argv(target, str(srv.keys.client_key), str(kh),  # type: ignore[union-attr]
                                 connect_timeout=10), remote]
            return subprocess.run(argv, input=data, capture_output=True, env=env,
                                  timeout=60, cwd=tmp_path)

        r = ssh(sc.mkdir_command(dump_dir))
        assert r.returncode == 0, r.stderr.decode()
        r = ssh("umask 0077 && " + sc.remote(["dd", "bs=512", "of=" + dest]), b"flattened-dump")
        assert r.returncode == 0, r.stderr.decode()
        r = ssh(sc.remote(["mv", "-f", "--", dest, dump_dir + "/vmcore.flat"]))
        assert r.returncode == 0, r.stderr.decode()
        assert (Path(dump_dir) / "vmcore.flat").read_bytes() == b"flattened-dump"
        assert not (tmp_path / "PWNED").exists() and not Path("/root/PWNED").exists()

        # a host key that is not the server's must be refused, never accepted
        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)
        kh.write_text(sc.known_hosts_line("127.0.0.1", srv.port,
                                          other.with_suffix(".pub").read_text()) + "\n")
        r = ssh(sc.remote(["true"]))
        assert r.returncode == 255 and b"HOST IDENTIFICATION HAS CHANGED" in r.stderr
        pid = srv.pid
    assert not port_open(srv.port)
    assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(
        f"/proc/{pid}/cmdline").read_bytes()
