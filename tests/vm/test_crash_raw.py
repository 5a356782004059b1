"""Crash a real kernel; the capture image mkkdumprd built writes a flattened dump to a raw disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage, run_mkkdumprd
from tests.vm.harness import disks, vmcore
from tests.vm.harness.crash import crash_cycle


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
