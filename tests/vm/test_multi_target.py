"""Several dump targets (dump_policy), crashed for real: the dump survives losing targets.

One guest holds several disks, so one crash covers several targets: under `fallback` an
NFS server that is down, then a small ext4 disk the vmcore fills (ENOSPC), then a disk
that takes it; under `all` an ext4 disk and NFS each get a complete vmcore; when every
target fails, failure_action runs once, after all of them.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from mkkdumprd.network.ssh_command import known_hosts_line
from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks, vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER
from tests.vm.servers import GUEST_SERVER_IP, NfsServer, SshServer, free_port

DRIVERS = ["ext4", "virtio_net"]
WAIT = 10
RESULT = re.compile(r"^kdump: target (.+?): (saved to|failed:|skipped:) (.*)$", re.M)


def _conf(tmp_path: Path, *lines: str) -> Path:
    conf = tmp_path / "kdump.conf"
    conf.write_text("".join(line + "\n" for line in lines))
    return conf


def _down_nfs(tmp_path: Path) -> NfsServer:
    """A relay to a loopback port where nothing listens: the NFS server is down."""
    srv = NfsServer(tmp_path / "nfs")
    srv.port = free_port()
    return srv


def _results(console: str) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2).rstrip(":"), m.group(3)) for m in RESULT.finditer(console)]


def _files(disk: Path) -> tuple[str, dict[str, disks.DirEntry]]:
    (dump,) = disks.ext4_find_dumps(disk)
    return dump, {e.name: e for e in disks.ext4_ls(disk, f"/var/crash/{dump}")}


def _read(disk: Path, path: str, out: Path) -> str:
    return disks.ext4_dump(disk, path, out).read_text(errors="replace")


# One crash; the NFS attempt waits kdump.timeout=10 s. 120 s measured on the shared machine
@pytest.mark.vm
def test_fallback_past_a_down_server_and_a_full_disk(kernel: Kernel, tmp_path: Path,
                                                     build_capture: BuildImage) -> None:
    small, big = str(uuid.uuid4()), str(uuid.uuid4())
    conf = _conf(tmp_path, f"nfs {GUEST_SERVER_IP}:/export", f"ext4 UUID={small}",
                 f"ext4 UUID={big}", "dump_policy fallback", "path /var/crash",
                 "failure_action poweroff", "final_action reboot")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=DRIVERS)
    # 4 MiB: the vmcore (> 1 MiB per the other tests, several MiB here) cannot fit
    small_disk = disks.make_ext4(tmp_path / "small.img", small, size_mb=4,
                                 content=disks.tree(tmp_path / "fs-small", "var/crash"))
    big_disk = disks.make_ext4(tmp_path / "big.img", big, size_mb=256,
                               content=disks.tree(tmp_path / "fs-big", "var/crash"))
    srv = _down_nfs(tmp_path)

    # kdump.space_check=0: the free-space check would skip the small disk (the test below);
    # here it must fill up under the collector
    run = crash_cycle(kernel, image, [small_disk, big_disk], tmp_path,
                      guestfwd=[srv.guestfwd(2049)],
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT} "
                                     "kdump.space_check=0")

    console = run.console.split(LOADED_MARKER, 1)[1]
    tail = console[-6000:]
    results = _results(console)
    assert [(d.split(" ", 1)[0], s) for d, s, _ in results] == \
        [("nfs", "failed"), ("ext4", "failed"), ("ext4", "saved to")], tail
    assert "cannot mount NFS" in results[0][2], results
    assert "vmcore-incomplete" in results[1][2], results
    assert "final action: rebooting" in console and "failure action" not in console, tail

    # the small disk: the partial dump stays vmcore-incomplete, with the reason and the log
    dump, files = _files(small_disk)
    assert "vmcore" not in files and "vmcore-incomplete" in files, f"{sorted(files)}\n{tail}"
    reason = _read(small_disk, f"/var/crash/{dump}/failure-reason.txt", tmp_path / "reason")
    assert "core collector exited with status" in reason and "No space left" in reason, reason
    log = _read(small_disk, f"/var/crash/{dump}/kexec-dmesg.log", tmp_path / "small.log")
    assert "kdump: target 1: nfs" in log, log[:3000]
    assert "No space left on device" in log, log[-3000:]

    # the big disk: a complete, readable vmcore and its log
    dump, files = _files(big_disk)
    assert {"vmcore", "vmcore-dmesg.txt", "kexec-dmesg.log"} <= set(files), sorted(files)
    assert "vmcore-incomplete" not in files and "failure-reason.txt" not in files
    log = _read(big_disk, f"/var/crash/{dump}/kexec-dmesg.log", tmp_path / "big.log")
    assert "the capture kernel's dmesg" in log and "Linux version" in log, log[-3000:]
    vmc = disks.ext4_dump(big_disk, f"/var/crash/{dump}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore")


def _old_dumps(content: Path) -> tuple[list[str], list[str]]:
    """Three complete dumps of this host made by mkkdumprd, and what is not one: another
    tool's directory, an incomplete dump, another host's dump (made on the host)."""
    ours = [f"127.0.0.1-2026-01-0{i}-00:00:00" for i in (1, 2, 3)]
    others = ["127.0.0.1-2025-06-01-00:00:00", "127.0.0.1-2025-07-01-00:00:00",
              "10.0.2.16-2025-01-01-00:00:00", "notes"]
    for name in [*ours, *others]:
        d = content / "var/crash" / name
        d.mkdir(parents=True)
        if name != others[1]:
            (d / "vmcore").write_bytes(b"old")
        if name != others[0]:
            (d / "kexec-dmesg.log").write_text("kdump: capture image by mkkdumprd 0.1.0 for x\n")
    return ours, others


# One crash: a makedumpfile dry run, one dump. 64 s measured on the shared machine
@pytest.mark.vm
def test_fallback_skips_a_disk_too_small_and_keep_dumps(kernel: Kernel, tmp_path: Path,
                                                         build_capture: BuildImage) -> None:
    small, big = str(uuid.uuid4()), str(uuid.uuid4())
    conf = _conf(tmp_path, f"ext4 UUID={small}", f"ext4 UUID={big}", "dump_policy fallback",
                 "path /var/crash", "keep_dumps 2", "failure_action poweroff")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=DRIVERS)
    small_disk = disks.make_ext4(tmp_path / "small.img", small, size_mb=4,
                                 content=disks.tree(tmp_path / "fs-small", "var/crash"))
    ours, others = _old_dumps(tmp_path / "fs-big")
    big_disk = disks.make_ext4(tmp_path / "big.img", big, size_mb=256,
                               content=tmp_path / "fs-big")

    run = crash_cycle(kernel, image, [small_disk, big_disk], tmp_path)

    console = run.console.split(LOADED_MARKER, 1)[1]
    tail = console[-6000:]
    results = _results(console)
    assert [s for _, s, _ in results] == ["skipped", "saved to"], tail
    assert re.match(r"not enough free space: \d+ MiB free, the dump needs about \d+ MiB",
                    results[0][2]), results
    assert disks.ext4_find_dumps(small_disk) == [], "the skipped disk was written to"
    names = disks.ext4_find_dumps(big_disk)
    new = [n for n in names if n not in ours and n not in others]
    # the oldest of ours went; the other tool's, the incomplete, the other host's stayed
    assert len(new) == 1 and set(names) - set(new) == {*ours[1:], *others}, \
        f"{names}\n{tail}"
    assert f"keep_dumps 2: removing the old dump {ours[0]}" in console, tail


# One crash, two complete dumps. 163 s measured on the shared machine (busy)
@pytest.mark.vm
def test_all_dumps_to_ext4_and_nfs(kernel: Kernel, tmp_path: Path,
                                   build_capture: BuildImage) -> None:
    fs = str(uuid.uuid4())
    conf = _conf(tmp_path, f"ext4 UUID={fs}", f"nfs {GUEST_SERVER_IP}:/export",
                 "dump_policy all", "path /var/crash", "failure_action poweroff")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=DRIVERS)
    disk = disks.make_ext4(tmp_path / "disk.img", fs, size_mb=256,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    with NfsServer(tmp_path / "nfs").start() as srv:
        (srv.export / "var/crash").mkdir(parents=True)
        run = crash_cycle(kernel, image, [disk], tmp_path, guestfwd=[srv.guestfwd(2049)])
    console = run.console.split(LOADED_MARKER, 1)[1]
    tail = console[-6000:]
    assert [s for _, s, _ in _results(console)] == ["saved to", "saved to"], tail

    dump, files = _files(disk)
    assert {"vmcore", "kexec-dmesg.log"} <= set(files), f"{sorted(files)}\n{tail}"
    local = disks.ext4_dump(disk, f"/var/crash/{dump}/vmcore", tmp_path / "local.vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(local, tmp_path / "local.txt"), "ext4 vmcore")

    (remote,) = list((srv.export / "var/crash").iterdir())
    names = {p.name for p in remote.iterdir()}
    assert {"vmcore", "vmcore-dmesg.txt", "kexec-dmesg.log"} <= names, names
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(remote / "vmcore", tmp_path / "nfs.txt"),
                              "nfs vmcore")


# One crash, two bounded waits of kdump.timeout=10 s. 77 s measured on the shared machine
@pytest.mark.vm
def test_every_target_failing_runs_failure_action_once(kernel: Kernel, tmp_path: Path,
                                                       build_capture: BuildImage) -> None:
    conf = _conf(tmp_path, f"nfs {GUEST_SERVER_IP}:/export",
                 f"ext4 UUID={uuid.uuid4()}", "dump_policy fallback",
                 "failure_action poweroff", "final_action reboot")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=DRIVERS)
    srv = _down_nfs(tmp_path)
    run = crash_cycle(kernel, image, [], tmp_path, guestfwd=[srv.guestfwd(2049)],
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")
    console = run.console.split(LOADED_MARKER, 1)[1]
    tail = console[-6000:]
    assert [s for _, s, _ in _results(console)] == ["failed", "failed"], tail
    assert console.count("failure action: powering off") == 1, tail
    # after both attempts
    assert console.index("failure action: powering off") > \
        console.rindex("kdump: target ext4"), tail
    assert "kdump: dump failed: no dump target holds a complete vmcore" in console, tail
    assert "reboot: Power down" in console, tail


# 137 s measured on the shared machine: slow (the default run covers fallback above)
@pytest.mark.vm
@pytest.mark.slow
def test_fallback_from_ssh_with_a_changed_host_key_to_nfs(
        kernel: Kernel, tmp_path: Path, build_capture: BuildImage,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ssh server's host key is not the recorded one: nothing is sent there, the network
    is taken down after the attempt, and NFS (brought up again) gets the dump."""
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/known_hosts").write_text(known_hosts_line(
        GUEST_SERVER_IP, 22, impostor.with_suffix(".pub").read_text()) + "\n")
    monkeypatch.setenv("HOME", str(home))    # the build reads ~/.ssh/known_hosts
    with SshServer(tmp_path / "sshd").start() as sshd, \
            NfsServer(tmp_path / "nfs").start() as nfs:
        assert sshd.keys is not None
        conf = _conf(tmp_path, f"ssh root@{GUEST_SERVER_IP}", f"sshkey {sshd.keys.client_key}",
                     f"nfs {GUEST_SERVER_IP}:/export", "dump_policy fallback",
                     "path /var/crash", "failure_action poweroff")
        image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=DRIVERS)
        (nfs.export / "var/crash").mkdir(parents=True)
        run = crash_cycle(kernel, image, [], tmp_path,
                          guestfwd=[sshd.guestfwd(22), nfs.guestfwd(2049)],
                          capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")
    console = run.console.split(LOADED_MARKER, 1)[1]
    tail = console[-6000:]
    results = _results(console)
    assert [s for _, s, _ in results] == ["failed", "saved to"], tail
    assert "Host key verification failed" in results[0][2] or \
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in console, tail
    (remote,) = list((nfs.export / "var/crash").iterdir())
    assert {"vmcore", "kexec-dmesg.log"} <= {p.name for p in remote.iterdir()}
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(remote / "vmcore", tmp_path / "nfs.txt"),
                              "nfs vmcore")
