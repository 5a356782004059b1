"""Crash a real kernel and stream its dump over ssh into an account restricted the way the
collection's dump_server role restricts it: sshd's ForceCommand runs
ansible/roles/dump_server/files/mkkdumprd-dump-only for every login, which accepts only the
capture image's own remote commands inside the dump directory.

The sshd is the private one of test_crash_ssh.py (127.0.0.1, its own keys, reached by the
guest as 10.0.2.100:22 through QEMU user networking with restrict=on); the dump directory's
name holds a space so the ForceCommand quoting is exercised too.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.network.ssh_command import known_hosts_line
from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import LOADED_MARKER
from tests.vm.servers import GUEST_SERVER_IP, SshServer

FORCED = Path(__file__).resolve().parents[2] / "ansible/roles/dump_server/files/mkkdumprd-dump-only"
DUMP_DIR = re.compile(r"10\.0\.2\.15-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")


@pytest.mark.vm  # one ssh crash cycle as test_crash_ssh.py; 3 min 23 s here under heavy load
def test_dump_lands_through_the_restricted_account(kernel: Kernel, tmp_path: Path,
                                                   build_capture: BuildImage,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tmp_path / "dump server"
    remote.mkdir()
    forced = f"ForceCommand {shlex.quote(str(FORCED))} {shlex.quote(str(remote))}\n"
    with SshServer(tmp_path / "sshd", extra_config=forced).start() as srv:
        assert srv.keys is not None
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh/known_hosts").write_text(
            known_hosts_line(GUEST_SERVER_IP, 22, srv.keys.host_public) + "\n")
        monkeypatch.setenv("HOME", str(home))
        conf = tmp_path / "kdump.conf"
        conf.write_text(f"ssh root@{GUEST_SERVER_IP}\nsshkey {srv.keys.client_key}\n"
                        f"path {remote}\n")
        image = build_capture(["-c", str(conf)], tmp_path / "capture.img",
                              drivers=["virtio_net"])
        run = crash_cycle(kernel, image, [], tmp_path, guestfwd=[srv.guestfwd(22)])
        # the same account refuses anything else
        refused = subprocess.run(
            ["ssh", "-i", str(srv.keys.client_key), "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={home}/.ssh/known_hosts", "-o",
             "StrictHostKeyChecking=no", "-p", str(srv.port), "root@127.0.0.1",
             f"touch {shlex.quote(str(tmp_path / 'PWNED'))}"],
            capture_output=True, text=True, timeout=60, check=False)
    console = run.console.split(LOADED_MARKER, 1)[-1]
    assert refused.returncode == 1 and "refused" in refused.stderr, refused
    assert not (tmp_path / "PWNED").exists()
    dumps = sorted(p.name for p in remote.iterdir())
    assert len(dumps) == 1 and DUMP_DIR.fullmatch(dumps[0]), \
        f"dump dirs {dumps}; console:\n{console[-4000:]}"
    d = remote / dumps[0]
    # kexec-dmesg.log: the capture kernel's log, sent through the same forced command
    assert sorted(p.name for p in d.iterdir()) == [
        "kexec-dmesg.log", "vmcore-dmesg.txt", "vmcore.flat"], \
        console[-4000:]
    vmcore.assert_sysrq_crash((d / "vmcore-dmesg.txt").read_text(errors="replace"),
                              "vmcore-dmesg.txt")
    restored = tmp_path / "vmcore"
    with open(d / "vmcore.flat", "rb") as flat:
        subprocess.run(["makedumpfile", "-R", str(restored)], stdin=flat, check=True,
                       capture_output=True, timeout=300)
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(restored), "vmcore restored from vmcore.flat")
