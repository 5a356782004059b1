"""Hung hooks are killed and the flow goes on; a dump path that leads off the target (a
symlink on it to /tmp, which is RAM in the capture kernel) is refused, not reported saved.

One boot proves both: kdump_pre hangs (killed, the dump is attempted), the target's
/var/crash points off the target (the dump fails with that reason, nothing is written),
kdump_post hangs (killed), then failure_action runs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER

LABEL = "kdumptest"
HOOK_TIMEOUT = 5


@pytest.fixture
def hook_dir() -> Iterator[Path]:
    # Not under /tmp: the capture image mounts tmpfs there, which would hide the hooks.
    d = Path(tempfile.mkdtemp(prefix="mkkdumprd-vm-hooks-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d)


def _hook(d: Path, name: str) -> Path:
    p = d / name
    p.write_text(f"#!/bin/sh\necho 'HOOK {name} started'\nsleep 100000\n")
    p.chmod(0o755)
    return p


@pytest.mark.vm
def test_hung_hooks_and_a_path_off_the_target(kernel: Kernel, tmp_path: Path, hook_dir: Path,
                                              build_capture: BuildImage) -> None:
    pre, post = _hook(hook_dir, "pre"), _hook(hook_dir, "post")
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ext4 LABEL={LABEL}\npath /var/crash\nkdump_pre {pre}\n"
                    f"kdump_post {post}\nfailure_action poweroff\nfinal_action reboot\n")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img")
    content = disks.tree(tmp_path / "fs", "var")
    (content / "var" / "crash").symlink_to("/tmp")
    disk = disks.make_ext4(tmp_path / "disk.img", "6e1f0d2c-1111-4222-8333-944455556666",
                           size_mb=128, label=LABEL, content=content)

    run = crash_cycle(kernel, image, [disk], tmp_path,
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout=10 "
                                     f"kdump.hook_timeout={HOOK_TIMEOUT}")

    capture = run.console.split(LOADED_MARKER, 1)[1]
    tail = capture[-5000:]
    for hook in (pre, post):
        assert f"HOOK {hook.name} started" in capture, tail
        assert f"kdump: error: {hook} did not finish within {HOOK_TIMEOUT} s" in capture, tail
    assert "kdump_pre failed (time limit); going on with the dump" in capture, tail
    assert "kdump: found LABEL=kdumptest" in capture, tail
    assert "kdump: dump saved" not in capture, tail
    assert ("kdump: dump failed: /var/crash/" in capture
            and "is not on the dump target" in capture), tail
    assert "failure action: powering off" in capture and "reboot: Power down" in capture, tail
    assert "final action" not in capture, tail
