"""The project's loader itself in an arm64 guest: `python3 -m mkkdumprd.loader load` on the
Debian bookworm arm64 kernel meets ENOSYS from kexec_file_load, falls back to kexec-tools'
`kexec -p` (with its own `_text` kallsyms fix in a private mount namespace), `status` says
which path loaded it, and the crash gives a vmcore that arm64 makedumpfile reads."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.foreign_sysroot import Sysroot, foreign_sysroot
from tests.vm.harness import disks
from tests.vm.harness.multiarch import (
    ForeignVMSpec,
    build_cross_capture,
    check_dump,
    first_kernel_append,
)
from tests.vm.harness.multiarch_python import build_loader_first_stage, loader_script
from tests.vm.harness.python_guest import CRASHING_MARKER, parse_steps
from tests.vm.harness.qemu import VM, Drive

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.multiarch]


@pytest.fixture(scope="module")
def sysroot() -> Sysroot:
    return foreign_sysroot("aarch64")


def test_product_loader_falls_back_to_kexec_load_on_arm64(sysroot: Sysroot,
                                                          tmp_path: Path) -> None:
    fs_uuid = str(uuid.uuid4())
    image = build_cross_capture(sysroot, f"local:UUID={fs_uuid}:/var/crash",
                                tmp_path / "capture.img")
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    first = build_loader_first_stage(sysroot, image, tmp_path / "first.img",
                                     loader_script("aarch64"))
    spec = ForeignVMSpec(sysroot.kernel, first, first_kernel_append("aarch64", "256M"),
                         drives=(Drive(disk),), arch="aarch64")
    with VM(spec, tmp_path / "console.log", 400) as vm:
        vm.wait_for(CRASHING_MARKER)
        vm.wait_exit()
        console = vm.console()
    steps = parse_steps(console)
    assert steps["status-before"].rc == 3, steps["status-before"]
    load = steps["load"]
    assert load.rc == 0, load.output
    out = load.output
    assert "this kernel has no kexec_file_load (ENOSYS" in out, out
    assert "/sbin/kexec -p -c /boot/vmlinuz" in out
    assert "private mount namespace, /proc/kallsyms with _text added" in out
    assert "Can't get the symbol of _text" not in out
    assert "loaded /boot/vmlinuz (as is, by kexec-tools)" in out
    after = steps["status-after"]
    assert after.rc == 0 and "loaded via:   kexec_load (kexec-tools" in after.output, \
        after.output
    assert '"path": "kexec_load"' in steps["status-json"].output
    dump = check_dump(disk, tmp_path, sysroot, console)
    assert dump.size > 4 << 20
