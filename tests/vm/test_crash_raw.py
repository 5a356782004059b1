"""Crash a real kernel; the capture image mkkdumprd built writes a flattened dump to a raw disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import REPO, BuildImage, run_mkkdumprd
from tests.vm.harness import disks, vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import LOADED_MARKER


@pytest.mark.vm
def test_raw_dump(kernel: Kernel, tmp_path: Path, build_capture: BuildImage) -> None:
    image = build_capture(["--target", "raw:/dev/vda"], tmp_path / "capture.img")
    disk = disks.make_raw(tmp_path / "raw.img")

    run = crash_cycle(kernel, image, [disk], tmp_path)

    with open(disk, "rb") as f:
        head = f.read(16)
    # makedumpfile's flattened format starts with this signature.
    assert head.startswith(b"makedumpfile"), \
        f"no flattened dump at the start of the disk; console:\n{run.console[-4000:]}"
    vmc = disks.unflatten_raw(disk, tmp_path / "vmcore")
    assert vmc.stat().st_size > 1 << 20
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore from the raw disk")

    # The product's first-kernel recovery (Fedora's save_raw) from the same disk image.
    saved = tmp_path / "saved"
    saved.mkdir()
    r = run_mkkdumprd(["savecore", "--device", str(disk), "--path", str(saved)])
    assert r.returncode == 0, r.stdout + r.stderr
    recovered = sorted(saved.glob("*/vmcore"))
    assert len(recovered) == 1, f"{list(saved.rglob('*'))}\n{r.stdout}{r.stderr}"
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(recovered[0]), "vmcore from savecore")
    with open(disk, "rb") as f:
        assert f.read(512) == bytes(512), "savecore left the flattened header in place"
    # A second run must not find the same dump again.
    r = run_mkkdumprd(["savecore", "--device", str(disk), "--path", str(saved)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(saved.glob("*/vmcore")) == recovered


# The flattened header block makedumpfile writes first (signature, type 1, version 1).
FLAT_HEADER = (b"makedumpfile".ljust(16, b"\0") + (1).to_bytes(8, "big")
               + (1).to_bytes(8, "big")).ljust(512, b"\0")
SAVECORE_LIMIT = 60  # s; the old savecore waited ~600 s in makedumpfile -R on such a stream


@pytest.mark.vm
def test_raw_device_smaller_than_the_dump(kernel: Kernel, tmp_path: Path,
                                          build_capture: BuildImage) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text("raw /dev/vda\nfailure_action poweroff\nfinal_action reboot\n")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img")
    disk = disks.make_raw(tmp_path / "raw.img", size_mb=4)

    run = crash_cycle(kernel, image, [disk], tmp_path)

    capture = run.console.split(LOADED_MARKER, 1)[1]
    tail = capture[-4000:]
    # dd's failure is the reason, not the collector's SIGPIPE that follows it
    assert "kdump: dump failed: writing to /dev/vda failed (dd status" in capture, tail
    assert "core collector exited" not in capture, tail
    assert "failure action: powering off" in capture and "final action" not in capture, tail
    with open(disk, "rb") as f:
        head = f.read(512)
    assert head == bytes(512), "the capture side left the flattened header of a cut dump"

    # A capture image that could not clear the header (or an older one) leaves it in
    # place: savecore must see that the stream is cut short, in bounded time, and not
    # leave anything that looks like a dump.
    with open(disk, "r+b") as f:
        f.write(FLAT_HEADER)
    saved = tmp_path / "saved"
    saved.mkdir()
    argv = [sys.executable, "-m", "mkkdumprd", "savecore", "--device", str(disk),
            "--path", str(saved)]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=SAVECORE_LIMIT)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cut short" in r.stderr and "mkkdumprd-failed" in r.stderr, r.stderr
    assert list(saved.rglob("*")) == [], list(saved.rglob("*"))
    # the next boot's savecore does not try it again
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=SAVECORE_LIMIT)
    assert r.returncode == 0 and r.stdout.strip() == f"no dump on {disk}", r.stdout + r.stderr
    assert list(saved.rglob("*")) == []
