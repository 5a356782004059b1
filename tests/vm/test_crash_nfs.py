"""Crash a real kernel; the capture image dumps over NFS to a real nfs-ganesha on 127.0.0.1.

The guest reaches the server only through QEMU user networking with restrict=on and one
guestfwd relay (10.0.2.100:2049 → 127.0.0.1:<ganesha's port>); the host never mounts NFS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mkkdumprd.host import Host
from mkkdumprd.records.outcome import OUTCOME_FILE, read_outcome
from tests.support.debian_kernel import Kernel
from tests.support.fake_network import FakeNet
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
    assert set(files) == {"vmcore", "vmcore-dmesg.txt", OUTCOME_FILE, "kexec-dmesg.log"}, \
        f"{sorted(files)}\n{console[-4000:]}"
    # The outcome record of the successful dump, beside the vmcore it names.
    record = read_outcome(files[OUTCOME_FILE])
    assert record is not None and record.complete, files[OUTCOME_FILE].read_text()
    assert record.result == "saved" and record.duration is not None
    assert record.targets[0].result == "saved"
    assert "kdump: outcome record written" not in record.console    # written after it
    assert "Command line: elfcorehdr=" in files["kexec-dmesg.log"].read_text(errors="replace")
    assert record.targets[0].detail == \
        f"/var/kdump dir/{dumps[0]}/vmcore on {GUEST_SERVER_IP}:/export"
    assert files["vmcore"].stat().st_size > 1 << 20
    vmcore.assert_sysrq_crash(files["vmcore-dmesg.txt"].read_text(errors="replace"),
                              "vmcore-dmesg.txt")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(files["vmcore"], tmp_path / "dmesg.txt"),
                              "vmcore")


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


def _guest_system(root: Path, mac: str = "52:54:00:12:34:56") -> Host:
    """/proc and /sys of the guest as a host-only build sees its machine: a virtio NIC
    (QEMU's default MAC) with slirp's addresses, and the export mounted with options the
    capture kernel must rewrite."""
    net = FakeNet(root)
    dev = "sys/devices/pci0000:00/0000:00:02.0"
    for rel, target in ((f"{dev}/driver", "../../../bus/pci/drivers/virtio-pci"),
                        ("sys/bus/pci/drivers/virtio-pci/module", "../../../../module/virtio_pci"),
                        (f"{dev}/virtio0/driver", "../../../../bus/virtio/drivers/virtio_net"),
                        ("sys/bus/virtio/drivers/virtio_net/module",
                         "../../../../module/virtio_net"),
                        ("sys/class/net/eth0", f"../../{dev[4:]}/virtio0/net/eth0")):
        net.symlink(rel, target)
    (root / "sys/module/virtio_pci").mkdir(parents=True)
    (root / "sys/module/virtio_net").mkdir(parents=True)
    net.write(f"{dev}/virtio0/net/eth0/address", mac + "\n")
    net.symlink(f"{dev}/virtio0/net/eth0/device", "../../../virtio0")
    net.addr4("eth0", "10.0.2.15/24")
    net.route4("eth0", "0.0.0.0/0", "10.0.2.2")
    net.commit()
    net.write("/proc/self/mountinfo",
              "40 1 0:40 / /mnt/dumps rw,relatime - nfs4 10.0.2.100:/export ro,vers=4.1,"
              "rsize=1048576,hard,proto=tcp,timeo=50,retrans=2,sec=sys,clientaddr=10.0.2.15,"
              "local_lock=none,addr=10.0.2.100\n")
    return Host(root)


@pytest.mark.vm
def test_nfs_dump_host_only_static(kernel: Kernel, tmp_path: Path) -> None:
    """A host-only image: static ip= from the machine's route, NIC found by MAC, its driver
    from sysfs, mount options from the live mount (addr/clientaddr/proto dropped, ro→rw)."""
    from mkkdumprd.assemble.builder import BuildRequest, build_image
    from mkkdumprd.config.kdumpconf import load_kdump_conf

    system = _guest_system(tmp_path / "guest")
    config = load_kdump_conf(_conf(tmp_path, "/"))
    result = build_image(BuildRequest(
        config=config, kver=kernel.kver, kmoddir=kernel.kmoddir, sysroot=Host.this_machine(),
        machine=system, arch="x86_64", hostonly=True, output=tmp_path / "capture.img"))
    assert {"virtio_net", "virtio_pci", "nfsv4"} <= set(result.kernel_modules)
    with NfsServer(tmp_path / "nfs").start() as srv:
        run = crash_cycle(kernel, tmp_path / "capture.img", [], tmp_path,
                          guestfwd=[srv.guestfwd(2049)])
    console = run.console.split(LOADED_MARKER, 1)[-1]
    assert ("network: ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:none "
            "(card 52:54:00:12:34:56)") in console, console[-4000:]
    assert "-o rw,relatime,vers=4.1,rsize=1048576,hard,timeo=50,retrans=2,sec=sys," \
           "local_lock=none)" in console, console[-4000:]
    dumps = [p for p in srv.export.iterdir() if DUMP_DIR.fullmatch(p.name)]
    assert len(dumps) == 1, f"{list(srv.export.iterdir())}; console:\n{console[-4000:]}"
    assert sorted(p.name for p in dumps[0].iterdir()) == sorted(
        ["vmcore", "vmcore-dmesg.txt", OUTCOME_FILE, "kexec-dmesg.log"])
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(dumps[0] / "vmcore", tmp_path / "dmesg.txt"))


@pytest.mark.vm
def test_missing_network_card_runs_failure_action(kernel: Kernel, tmp_path: Path) -> None:
    """A host-only image whose NIC (by MAC) is not in the machine waits, bounded, then
    runs failure_action with the reason on the console."""
    from mkkdumprd.assemble.builder import BuildRequest, build_image
    from mkkdumprd.config.kdumpconf import load_kdump_conf

    system = _guest_system(tmp_path / "guest", mac="52:54:00:ab:cd:ef")
    config = load_kdump_conf(_conf(tmp_path, "/", "failure_action poweroff\n"))
    build_image(BuildRequest(
        config=config, kver=kernel.kver, kmoddir=kernel.kmoddir, sysroot=Host.this_machine(),
        machine=system, arch="x86_64", hostonly=True, output=tmp_path / "capture.img"))
    with NfsServer(tmp_path / "nfs").start() as srv:
        run = crash_cycle(kernel, tmp_path / "capture.img", [], tmp_path,
                          guestfwd=[srv.guestfwd(2049)],
                          capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")
        assert not any(srv.export.iterdir())
    console = run.console.split(LOADED_MARKER, 1)[1]
    assert (f"network card 52:54:00:ab:cd:ef did not appear within {WAIT} s") in console, \
        console[-4000:]
    assert "reboot: Power down" in console, console[-4000:]
