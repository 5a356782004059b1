"""`mkkdumprd test --vm` run as users run it (the CLI in a subprocess) on the Debian kernel.

One guest per case: a local ext4 image that must pass (its --json checked key by key, and
--measure-crashkernel on a grid that costs one short extra boot), an image built without
the disk driver (the report must name the missing driver and the wait that expired), and
an NFS image against the loopback nfs-ganesha stand-in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mkkdumprd.network.ssh_command import known_hosts_line
from mkkdumprd.vmtest import report
from mkkdumprd.vmtest.real_target import TEST_DIR
from mkkdumprd.vmtest.servers import SshServer
from tests.support.debian_kernel import Kernel

REPO = Path(__file__).resolve().parents[2]
# The schema of --json: every key, with the types its value may have.
SCHEMA: dict[str, tuple[type, ...]] = {
    "verdict": (str,), "failed_step": (str, type(None)), "detail": (str,),
    "evidence": (list,), "panic_to_saved_s": (float, int, type(None)),
    "vmcore_bytes": (int, type(None)), "capture_memory_bytes": (int, type(None)),
    "capture_memory_total_bytes": (int, type(None)),
    "console_log": (str,), "kernel": (str,), "image": (str,), "target": (str,),
    "stand_in": (str,), "accel": (str,), "guest_memory_mb": (int,), "crashkernel": (str,),
    "seconds": (float, int), "crash_lines": (list,), "measure": (dict, type(None)),
}


def _test_vm(kernel: Kernel, work: Path, *args: str, home: Path | None = None,
             ) -> tuple[int, dict[str, Any], str]:
    argv = [sys.executable, "-m", "mkkdumprd", "test", "--vm", "--json", "--accel", "tcg",
            "--kernel", str(kernel.vmlinuz), "--kver", kernel.kver,
            "--kmoddir", str(kernel.kmoddir), "--no-hostonly", "--workdir", str(work), *args]
    env = {**os.environ, "HOME": str(home)} if home else None
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600,
                       env=env, stdin=subprocess.DEVNULL)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"mkkdumprd test printed no JSON (rc {r.returncode}):\n"
                    f"{r.stdout}\n{r.stderr}")
    return r.returncode, doc, r.stderr


def _check_schema(doc: dict[str, Any]) -> None:
    assert list(doc) == list(report.JSON_KEYS)
    assert set(SCHEMA) == set(report.JSON_KEYS)
    for key, types in SCHEMA.items():
        assert isinstance(doc[key], types), (key, doc[key])
    assert doc["verdict"] in ("pass", "fail")
    assert doc["failed_step"] is None or doc["failed_step"] in report.STEPS


@pytest.mark.vm
def test_local_image_passes(kernel: Kernel, tmp_path: Path) -> None:
    fs_uuid = str(uuid.uuid4())
    # --measure-crashkernel on a two-point grid: 144M is the proof itself (reused, no second
    # boot), 16M must fail at the load (the kernel and image do not fit): one short boot.
    rc, doc, err = _test_vm(kernel, tmp_path / "work",
                            "--add-drivers", "virtio_pci,virtio_blk,ext4",
                            "--target", f"local:UUID={fs_uuid}:/var/crash",
                            "--crashkernel", "144M", "--measure-crashkernel",
                            "--low", "16", "--high", "144", "--step", "128")
    _check_schema(doc)
    assert rc == 0 and doc["verdict"] == "pass", (doc, err)
    m = doc["measure"]
    assert m["minimum_mb"] == 144 and (m["live_mb"] is None or m["live_mb"] > 0), m
    probes = {p["crashkernel_mb"]: p for p in m["probes"]}
    assert set(probes) == {16, 144}, m
    assert probes[144]["verdict"] == "pass" and probes[144]["console_log"] == doc["console_log"]
    assert probes[16]["failed_step"] == report.NOT_LOADED, m
    assert doc["failed_step"] is None
    assert doc["vmcore_bytes"] > 1 << 20
    # The memstat line reached the console: a peak below what the capture kernel had.
    assert 0 < doc["capture_memory_bytes"] < doc["capture_memory_total_bytes"], doc
    assert doc["panic_to_saved_s"] is not None and doc["panic_to_saved_s"] > 0
    assert any("sysrq triggered crash" in line for line in doc["crash_lines"])
    assert f"UUID={fs_uuid}" in doc["stand_in"] and "ext4" in doc["stand_in"]
    assert re.fullmatch(r"\d+M", doc["crashkernel"])
    log = Path(doc["console_log"])
    assert log.is_file() and report.SAVED.search(log.read_text(errors="replace"))
    # The first stage loaded with mkkdumprd's loader, not kexec-tools.
    assert "MKKDUMPRD-PY: end load rc=0" in log.read_text(errors="replace")


@pytest.mark.vm
def test_image_without_disk_driver_names_it(kernel: Kernel, tmp_path: Path) -> None:
    fs_uuid = str(uuid.uuid4())
    rc, doc, err = _test_vm(kernel, tmp_path / "work", "--add-drivers", "virtio_pci,ext4",
                            "--target", f"local:UUID={fs_uuid}:/var/crash",
                            "--target-timeout", "5")
    _check_schema(doc)
    assert rc == 1 and doc["verdict"] == "fail", (doc, err)
    assert doc["failed_step"] == report.DRIVER_MISSING, doc
    assert "virtio_blk" in doc["detail"], doc
    # The console lines that show it: the wait for the target that expired.
    assert any(f"UUID={fs_uuid}" in line and "within 5 s" in line
               for line in doc["evidence"]), doc["evidence"]
    assert doc["vmcore_bytes"] is None


@pytest.mark.vm
def test_nfs_image_against_the_loopback_server(kernel: Kernel, tmp_path: Path) -> None:
    rc, doc, err = _test_vm(kernel, tmp_path / "work", "--add-drivers", "virtio_pci,virtio_net",
                            "--target", "nfs:10.0.2.100:/export/crash")
    _check_schema(doc)
    assert rc == 0 and doc["verdict"] == "pass", (doc, err)
    assert "nfs-ganesha on 127.0.0.1" in doc["stand_in"], doc
    assert doc["vmcore_bytes"] > 1 << 20


def _home(tmp_path: Path, known_hosts: str) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/known_hosts").write_text(known_hosts)
    return home


@pytest.mark.vm
def test_ssh_image_against_a_private_sshd(kernel: Kernel, tmp_path: Path) -> None:
    """An ssh image for a server that is never contacted (192.0.2.7, TEST-NET-1), built
    first and given with --image: the test recovers its build request from the image
    (its kdump.conf and manifest), rebuilds it for its private sshd on 127.0.0.1 and says
    what it substituted."""
    key = tmp_path / "kdump_id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    real_host_key = key.with_suffix(".pub").read_text().split()[:2]
    home = _home(tmp_path, known_hosts_line("192.0.2.7", 22, " ".join(real_host_key)) + "\n")
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ssh kdump@192.0.2.7\nsshkey {key}\npath /var/crash/kdump\n"
                    "hook_timeout 77\n")
    image = tmp_path / "capture.img"
    built = subprocess.run(
        [sys.executable, "-m", "mkkdumprd", "build", "-c", str(conf), "--kver", kernel.kver,
         "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
         "--add-drivers", "virtio_pci,virtio_net", "-o", str(image)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "HOME": str(home)})
    assert built.returncode == 0, built.stderr
    rc, doc, err = _test_vm(kernel, tmp_path / "work", "--image", str(image), home=home)
    _check_schema(doc)
    assert rc == 0 and doc["verdict"] == "pass", (doc, err)
    assert doc["target"] == "ssh kdump@192.0.2.7:/var/crash/kdump", doc
    standin = doc["stand_in"]
    assert "private sshd on 127.0.0.1" in standin, standin
    assert "destination kdump@192.0.2.7 -> root@10.0.2.100" in standin, standin
    assert "path /var/crash/kdump -> " in standin and "sshkey -> " in standin, standin
    assert "user kdump -> root" in standin, standin
    assert doc["vmcore_bytes"] > 1 << 20
    assert any("sysrq triggered crash" in line for line in doc["crash_lines"])


@pytest.mark.vm
@pytest.mark.long     # ~2.5 min under TCG (a rebuild, one boot, a dump over ssh)
def test_real_target_on_loopback_writes_and_removes_its_folder(kernel: Kernel,
                                                               tmp_path: Path) -> None:
    """--real-target --yes against a configured server on 127.0.0.1:22 (the private sshd
    playing the user's server): the dump lands in a mkkdumprd-test-* folder under the
    configured path, is read back, and the folder is gone afterwards."""
    remote = tmp_path / "dumps"
    remote.mkdir()
    (remote / "keep-me").write_text("a real dump beside the test\n")
    with SshServer(tmp_path / "sshd", port=22).start() as srv:
        assert srv.keys is not None
        home = _home(tmp_path, known_hosts_line("127.0.0.1", 22, srv.keys.host_public) + "\n")
        conf = tmp_path / "kdump.conf"
        conf.write_text(f"ssh root@127.0.0.1\nsshkey {srv.keys.client_key}\npath {remote}\n")
        rc, doc, err = _test_vm(kernel, tmp_path / "work", "-c", str(conf), "--real-target",
                                "--yes", "--add-drivers", "virtio_pci,virtio_net", home=home)
    _check_schema(doc)
    assert rc == 0 and doc["verdict"] == "pass", (doc, err)
    assert "the real server root@127.0.0.1" in doc["stand_in"], doc["stand_in"]
    removed = re.search(rf"removed {re.escape(str(remote))}/(\S+) from root@127.0.0.1",
                        doc["stand_in"])
    assert removed and TEST_DIR.fullmatch(removed.group(1)), doc["stand_in"]
    assert sorted(p.name for p in remote.iterdir()) == ["keep-me"]
    assert doc["vmcore_bytes"] > 1 << 20
    # The loopback server was relayed: the guest's network stayed restricted.
    cmd = Path(doc["console_log"]).with_suffix(".cmd").read_text()
    assert "restrict=on" in cmd, cmd


@pytest.mark.vm
@pytest.mark.long     # 154 s under TCG here (a rebuild, a crash boot, a read-back boot)
def test_real_target_nfs_on_loopback_writes_and_removes_its_folder(kernel: Kernel,
                                                                  tmp_path: Path) -> None:
    """--real-target --yes against an export configured as 127.0.0.1:/export (nfs-ganesha
    on 127.0.0.1:2049 playing the user's server, reached by the guest only through the
    guestfwd relay at 10.0.2.100): the dump lands in a mkkdumprd-test-* folder under the
    configured path, a second boot reads it back and removes the folder."""
    from mkkdumprd.vmtest.servers import NfsServer

    with NfsServer(tmp_path / "nfs", port=2049).start() as srv:
        crash = srv.export / "crash"
        crash.mkdir(parents=True)
        (crash / "keep-me").write_text("a real dump beside the test\n")
        rc, doc, err = _test_vm(kernel, tmp_path / "work", "--real-target", "--yes",
                                "--target", "nfs:127.0.0.1:/export/crash",
                                "--add-drivers", "virtio_pci,virtio_net")
        left = sorted(p.name for p in crash.iterdir())
    _check_schema(doc)
    assert rc == 0 and doc["verdict"] == "pass", (doc, err)
    assert "the real NFS server 127.0.0.1:/export" in doc["stand_in"], doc["stand_in"]
    removed = re.search(r"removed /crash/(\S+) from 127.0.0.1:/export", doc["stand_in"])
    assert removed and TEST_DIR.fullmatch(removed.group(1)), doc["stand_in"]
    assert left == ["keep-me"], left
    assert doc["vmcore_bytes"] > 1 << 20
    cmd = Path(doc["console_log"]).with_suffix(".cmd").read_text()
    assert "restrict=on" in cmd and "10.0.2.100:2049" in cmd, cmd
