"""A dump target that never appears ends in failure_action, bounded, with the reason shown."""

from __future__ import annotations

import re
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
FAILURE_WORDS = re.compile(r"fail|gave up|did not appear|not found|timed? ?out", re.I)


# What the kernel prints last for each action; halt is left out: a halted guest never ends
# QEMU, so the harness could only time it out.
ACTION_MESSAGES = {"poweroff": "reboot: Power down", "reboot": "reboot: Restarting system"}


@pytest.mark.vm
@pytest.mark.parametrize("action", sorted(ACTION_MESSAGES))
def test_missing_target_runs_failure_action(kernel: Kernel, tmp_path: Path,
                                            build_capture: BuildImage, action: str) -> None:
    missing = str(uuid.uuid4())
    # final_action is the other one, so the console tells which path the image took.
    other_action = {"poweroff": "reboot", "reboot": "poweroff"}[action]
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ext4 UUID={missing}\npath /var/crash\nfailure_action {action}\n"
                    f"final_action {other_action}\n")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img")
    # A disk is there (virtio works), but with another filesystem UUID than the target's.
    other = str(uuid.uuid4())
    disk = disks.make_ext4(tmp_path / "disk.img", other,
                           content=disks.tree(tmp_path / "fs", "var/crash"))

    # crash_cycle fails if QEMU does not end by itself: an unbounded wait would hang here.
    run = crash_cycle(kernel, image, [disk], tmp_path,
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout={WAIT}")

    capture_console = run.console.split(LOADED_MARKER, 1)[1]
    reasons = [line for line in capture_console.splitlines()
               if missing in line and FAILURE_WORDS.search(line)]
    assert reasons, f"no console line says the target {missing} failed to appear:\n" \
        f"{capture_console[-4000:]}"
    assert ACTION_MESSAGES[action] in capture_console, \
        f"failure_action {action} did not happen:\n{capture_console[-4000:]}"
    assert ACTION_MESSAGES[other_action] not in capture_console
    assert disks.ext4_find_dumps(disk) == []
