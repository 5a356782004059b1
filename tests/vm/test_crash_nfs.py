"""Crash a real kernel; the capture image dumps over NFS to a real nfs-ganesha on 127.0.0.1.

The guest reaches the server only through QEMU user networking with restrict=on and one
guestfwd relay (10.0.2.100:2049 → 127.0.0.1:<ganesha's port>); the host never mounts NFS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER
from tests.vm.servers import GUEST_SERVER_IP, NfsServer

# slirp's DHCP hands the guest 10.0.2.15
DUMP_DIR = re.compile(r"10\.0\.2\.15-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")
NET_DRIVERS = ["virtio_net"]
WAIT = 15


def _conf(tmp_path: Path, path: str, extra: str = "") -> Path:
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"nfs {GUEST_SERVER_IP}:/export\npath {path}\n"
                    f"core_collector makedumpfile -l --message-level 7 -d 31\n{extra}")
    return conf


@pytest.mark.vm
def test_nfs_dump(kernel: Kernel, tmp_path: Path, build_capture: BuildImage) -> None:
    # a dump path with a space: it must survive every quoting layer down to the server
    image = build_capture(["-c", str(_conf(tmp_path, "/var/kdump dir"))],
                          tmp_path / "capture.img", drivers=NET_DRIVERS)
    with NfsServer(tmp_path / "nfs").start() as srv:
        (srv.export / "var/kdump dir").mkdir(parents=True)
        run = crash_cycle(kernel, image, [], tmp_path, guestfwd=[srv.guestfwd(2049)])
    top = srv.export / "var/kdump dir"
    dumps = sorted(p.name for p in top.iterdir())
    console = run.console.split(LOADED_MARKER, 1)[-1]
    assert len(dumps) == 1 and DUMP_DIR.fullmatch(dumps[0]), \
        f"dump dirs {dumps}; console:\n{console[-4000:]}"
    files = {p.name: p for p in (top / dumps[0]).iterdir()}
    assert set(files) == {"vmcore", "vmcore-dmesg.txt"}, f"{sorted(files)}\n{console[-4000:]}"
    assert files["vmcore"].stat().st_size > 1 << 20
    vmcore.assert_sysrq_crash(files["vmcore-dmesg.txt"].read_text(errors="replace"),
                              "vmcore-dmesg.txt")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(files["vmcore"]), "vmcore")


@pytest.mark.vm
def test_nfs_server_down_runs_failure_action(kernel: Kernel, tmp_path: Path,
                                             build_capture: BuildImage) -> None:
    image = build_capture(["-c", str(_conf(tmp_path, "/", "failure_action poweroff\n"))],
                          tmp_path / "capture.img", drivers=NET_DRIVERS)
    # the relay points at a loopback port where nothing listens
    srv = NfsServer(tmp_path / "nfs")
    from tests.vm.servers import free_port
    srv.port = free_port()
    run = crash_cycle(kernel, image, [], tmp_path, guestfwd=[srv.guestfwd(2049)],
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")
    console = run.console.split(LOADED_MARKER, 1)[1]
    assert "cannot mount NFS 10.0.2.100:/export within" in console, console[-4000:]
    assert "reboot: Power down" in console, \
        f"failure_action poweroff did not power off:\n{console[-4000:]}"
