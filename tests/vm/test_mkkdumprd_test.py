"""`mkkdumprd test --vm` run as users run it (the CLI in a subprocess) on the Debian kernel.

One guest per case: a local ext4 image that must pass (its --json checked key by key), an
image built without the disk driver (the report must name the missing driver and the wait
that expired), an NFS image against the loopback nfs-ganesha stand-in, and (slow) the
crashkernel= bisection.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mkkdumprd.vmtest import report
from tests.support.debian_kernel import Kernel

REPO = Path(__file__).resolve().parents[2]
# The schema of --json: every key, with the types its value may have.
SCHEMA: dict[str, tuple[type, ...]] = {
    "verdict": (str,), "failed_step": (str, type(None)), "detail": (str,),
    "evidence": (list,), "panic_to_saved_s": (float, int, type(None)),
    "vmcore_bytes": (int, type(None)), "capture_memory_bytes": (int, type(None)),
    "console_log": (str,), "kernel": (str,), "image": (str,), "target": (str,),
    "stand_in": (str,), "accel": (str,), "guest_memory_mb": (int,), "crashkernel": (str,),
    "seconds": (float, int), "crash_lines": (list,), "measure": (dict, type(None)),
}


def _test_vm(kernel: Kernel, work: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    argv = [sys.executable, "-m", "mkkdumprd", "test", "--vm", "--json", "--accel", "tcg",
            "--kernel", str(kernel.vmlinuz), "--kver", kernel.kver,
            "--kmoddir", str(kernel.kmoddir), "--no-hostonly", "--workdir", str(work), *args]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600)
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
    rc, doc, err = _test_vm(kernel, tmp_path / "work",
                            "--add-drivers", "virtio_pci,virtio_blk,ext4",
                            "--target", f"local:UUID={fs_uuid}:/var/crash")
    _check_schema(doc)
    assert rc == 0 and doc["verdict"] == "pass", (doc, err)
    assert doc["failed_step"] is None
    assert doc["vmcore_bytes"] > 1 << 20
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
                            "--target-timeout", "10")
    _check_schema(doc)
    assert rc == 1 and doc["verdict"] == "fail", (doc, err)
    assert doc["failed_step"] == report.DRIVER_MISSING, doc
    assert "virtio_blk" in doc["detail"], doc
    # The console lines that show it: the wait for the target that expired.
    assert any(f"UUID={fs_uuid}" in line and "within 10 s" in line
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


@pytest.mark.vm
@pytest.mark.slow   # ~4-5 min under TCG here: one proof plus three or four probes
def test_measure_crashkernel(kernel: Kernel, tmp_path: Path) -> None:
    fs_uuid = str(uuid.uuid4())
    rc, doc, err = _test_vm(kernel, tmp_path / "work",
                            "--add-drivers", "virtio_pci,virtio_blk,ext4",
                            "--target", f"local:UUID={fs_uuid}:/var/crash",
                            "--measure-crashkernel", "--low", "64", "--high", "256",
                            "--step", "64")
    _check_schema(doc)
    assert rc == 0, (doc, err)
    m = doc["measure"]
    assert m["minimum_mb"] in (64, 128, 192, 256), m
    passed = [p["crashkernel_mb"] for p in m["probes"] if p["verdict"] == "pass"]
    failed = [p["crashkernel_mb"] for p in m["probes"] if p["verdict"] == "fail"]
    assert m["minimum_mb"] == min(passed), m
    assert all(f < m["minimum_mb"] for f in failed), m
    assert m["minimum_mb"] - 64 in failed or m["minimum_mb"] == 64, m
