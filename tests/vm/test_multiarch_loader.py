"""The project's loader itself in arm64 and ppc64le guests: `python3 -m mkkdumprd.loader load`
on Debian bookworm's kernel meets ENOSYS from kexec_file_load, falls back to kexec-tools'
`kexec -p` (on arm64 with its own `_text` kallsyms fix in a private mount namespace),
`status` says which path loaded it, and the crash gives a vmcore that the arch's own
makedumpfile reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.foreign_sysroot import Sysroot, foreign_sysroot
from tests.vm.harness.multiarch import (
    ForeignVMSpec,
    check_dump,
    ext4_dump_setup,
    first_kernel_append,
)
from tests.vm.harness.multiarch_python import (
    build_loader_first_stage,
    loader_script,
    run_loader_guest,
)
from tests.vm.harness.qemu import Drive

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.multiarch]


@pytest.mark.parametrize("arch", ["aarch64", "ppc64le"])
def test_product_loader_falls_back_to_kexec_load(arch: str, tmp_path: Path) -> None:
    sysroot: Sysroot = foreign_sysroot(arch)
    dump_to = ext4_dump_setup(sysroot, tmp_path)
    disk = dump_to.disk
    first = build_loader_first_stage(sysroot, dump_to.image, tmp_path / "first.img",
                                     loader_script(arch))
    spec = ForeignVMSpec(sysroot.kernel, first, first_kernel_append(arch, "256M"),
                         drives=(Drive(disk),), arch=arch)
    run = run_loader_guest(spec, tmp_path)
    console, steps = run.console, run.steps
    assert steps["status-before"].rc == 3, steps["status-before"]
    load = steps["load"]
    assert load.rc == 0, load.output
    out = load.output
    assert "this kernel has no kexec_file_load (ENOSYS" in out, out
    assert "/sbin/kexec -p -c /boot/vmlinuz" in out
    fixed = "private mount namespace, /proc/kallsyms with _text added" in out
    assert fixed == (arch == "aarch64"), out
    assert "Can't get the symbol of _text" not in out
    assert "loaded /boot/vmlinuz (as is, by kexec-tools)" in out
    after = steps["status-after"]
    assert after.rc == 0 and "loaded via:   kexec_load (kexec-tools" in after.output, \
        after.output
    assert '"path": "kexec_load"' in steps["status-json"].output
    dump = check_dump(disk, tmp_path, sysroot, console)
    assert dump.size > 1 << 20
