"""Crash a real kernel; the capture image streams the dump over ssh to a private sshd.

The sshd listens on a free 127.0.0.1 port with its own host key; the guest reaches it only
as 10.0.2.100:22 through QEMU user networking (restrict=on, one guestfwd relay). The image
trusts exactly the host key the test recorded in the builder's known_hosts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.network.ssh_command import known_hosts_line
from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER
from tests.vm.servers import GUEST_SERVER_IP, SshServer

DUMP_DIR = re.compile(r"10\.0\.2\.15-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")
NET_DRIVERS = ["virtio_net"]
WAIT = 15


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, srv: SshServer,
           host_key: str, extra: str = "") -> tuple[Path, Path]:
    """kdump.conf for the guest's view of the server, and the builder's known_hosts."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/known_hosts").write_text(known_hosts_line(GUEST_SERVER_IP, 22, host_key)
                                           + "\n")
    monkeypatch.setenv("HOME", str(home))    # the build reads ~/.ssh/known_hosts
    remote = tmp_path / "remote dumps; $(touch PWNED)"
    assert srv.keys is not None
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ssh root@{GUEST_SERVER_IP}\nsshkey {srv.keys.client_key}\n"
                    f"path {remote}\n{extra}")
    return conf, remote


@pytest.mark.vm
def test_ssh_dump(kernel: Kernel, tmp_path: Path, build_capture: BuildImage,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    with SshServer(tmp_path / "sshd").start() as srv:
        assert srv.keys is not None
        conf, remote = _setup(tmp_path, monkeypatch, srv, srv.keys.host_public)
        image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=NET_DRIVERS)
        run = crash_cycle(kernel, image, [], tmp_path, guestfwd=[srv.guestfwd(22)])
    console = run.console.split(LOADED_MARKER, 1)[-1]
    assert not (tmp_path / "PWNED").exists()
    dumps = sorted(p.name for p in remote.iterdir()) if remote.is_dir() else []
    assert len(dumps) == 1 and DUMP_DIR.fullmatch(dumps[0]), \
        f"dump dirs {dumps}; console:\n{console[-4000:]}"
    d = remote / dumps[0]
    assert sorted(p.name for p in d.iterdir()) == ["kexec-dmesg.log", "vmcore-dmesg.txt",
                                                   "vmcore.flat"], \
        console[-4000:]
    assert (d / "vmcore.flat").stat().st_mode & 0o077 == 0
    vmcore.assert_sysrq_crash((d / "vmcore-dmesg.txt").read_text(errors="replace"),
                              "vmcore-dmesg.txt")
    restored = tmp_path / "vmcore"
    with open(d / "vmcore.flat", "rb") as flat:
        subprocess.run(["makedumpfile", "-R", str(restored)], stdin=flat, check=True,
                       capture_output=True, timeout=300)
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(restored), "vmcore restored from vmcore.flat")


@pytest.mark.vm
def test_ssh_wrong_host_key_is_refused(kernel: Kernel, tmp_path: Path,
                                       build_capture: BuildImage,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A server whose host key is not the recorded one gets nothing; failure_action runs."""
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    with SshServer(tmp_path / "sshd").start() as srv:
        conf, remote = _setup(tmp_path, monkeypatch, srv,
                              impostor.with_suffix(".pub").read_text(),
                              "failure_action poweroff\n")
        image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=NET_DRIVERS)
        run = crash_cycle(kernel, image, [], tmp_path, guestfwd=[srv.guestfwd(22)],
                          capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")
    console = run.console.split(LOADED_MARKER, 1)[1]
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in console or \
        "Host key verification failed" in console, console[-4000:]
    assert "dump failed: cannot create" in console, console[-4000:]
    assert "reboot: Power down" in console, console[-4000:]
    assert not remote.exists()
