"""A dump target that never appears ends in failure_action, bounded, with the reason shown."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER

# The capture image's bounded wait, shortened on the capture kernel's command line (the
# image's own default is longer) so the test does not idle.
WAIT = 10


@pytest.mark.vm
def test_missing_target_runs_failure_action(kernel: Kernel, tmp_path: Path,
                                            build_capture: BuildImage) -> None:
    missing = str(uuid.uuid4())
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ext4 UUID={missing}\npath /var/crash\nfailure_action poweroff\n")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img")
    # A disk is there (virtio works), but with another filesystem UUID than the target's.
    other = str(uuid.uuid4())
    disk = disks.make_ext4(tmp_path / "disk.img", other,
                           content=disks.tree(tmp_path / "fs", "var/crash"))

    # crash_cycle fails if QEMU does not end by itself: an unbounded wait would hang here.
    run = crash_cycle(kernel, image, [disk], tmp_path,
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")

    capture_console = run.console.split(LOADED_MARKER, 1)[1]
    assert missing in capture_console, \
        f"the console never names the missing target:\n{capture_console[-4000:]}"
    assert "reboot: Power down" in capture_console, \
        f"failure_action poweroff did not power off:\n{capture_console[-4000:]}"
    assert disks.ext4_find_dumps(disk) == []
