"""kdump_emergency and /etc/kdump/emergency.d in a real failed dump: the target's disk is
missing, so the dump fails; the emergency.d hook that hangs is killed after hook_timeout,
kdump_emergency runs next, then failure_action powers the VM off (QEMU exits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.support.sysroot import make_sysroot
from tests.vm.conftest import BuildImage
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.mark.vm
def test_emergency_hooks_run_bounded_before_failure_action(
        kernel: Kernel, tmp_path: Path, build_capture: BuildImage) -> None:
    sysroot = make_sysroot(tmp_path / "sysroot", ["/usr/bin/busybox", "/usr/bin/makedumpfile",
                                                  "/usr/sbin/vmcore-dmesg"])
    _script(sysroot / "etc/kdump/emergency.d/01-hang",
            "echo EMERGENCY-D-HANG >/dev/console\nsleep 600\n")
    _script(sysroot / "usr/local/bin/on-error",
            "echo KDUMP-EMERGENCY-RAN >/dev/console\nexit 3\n")
    conf = tmp_path / "kdump.conf"
    conf.write_text("ext4 UUID=11111111-2222-3333-4444-555555555555\n"
                    "kdump_emergency /usr/local/bin/on-error\nhook_timeout 3\n"
                    "failure_action poweroff\n")
    image = build_capture(["-c", str(conf), "--sysroot", str(sysroot)],
                          tmp_path / "capture.img", drivers=["ext4"])
    run = crash_cycle(kernel, image, [], tmp_path,
                      capture_append=f"{CAPTURE_APPEND} kdump.timeout=5")
    console = run.console.split(LOADED_MARKER, 1)[-1]
    order = ["dump failed:", "running /etc/kdump/emergency.d/01-hang", "EMERGENCY-D-HANG",
             "01-hang did not finish within 3 s", "running kdump_emergency /usr/local/bin/on-error",
             "KDUMP-EMERGENCY-RAN", "kdump_emergency exited with status 3",
             "failure action: powering off", "reboot: Power down"]
    at = [console.find(s) for s in order]
    assert all(i >= 0 for i in at) and at == sorted(at), \
        f"{list(zip(order, at, strict=True))}\n{console[-4000:]}"
    assert console.count("KDUMP-EMERGENCY-RAN") == 1
