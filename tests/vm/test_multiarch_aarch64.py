"""aarch64 end to end under QEMU TCG: Debian bookworm arm64 kernel, capture image cross-built
with `mkkdumprd build --arch aarch64 --sysroot DIR`, loaded through the kexec_load fallback
(Debian arm64 has no kexec_file_load), crash, vmcore on a virtio ext4 disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.foreign_sysroot import Sysroot, foreign_sysroot
from tests.vm.harness.multiarch import check_dump, ext4_dump_setup

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.multiarch]


@pytest.fixture(scope="module")
def sysroot() -> Sysroot:
    return foreign_sysroot("aarch64")


def test_aarch64_crash_dump_to_ext4(sysroot: Sysroot, tmp_path: Path) -> None:
    from mkkdumprd.loader import kexec_tools
    from tests.vm.harness.multiarch import STEXT, TEXT, foreign_crash_cycle

    dump_to = ext4_dump_setup(sysroot, tmp_path)
    disk = dump_to.disk
    run = foreign_crash_cycle(sysroot, dump_to.image, [disk], tmp_path)

    # The load went through kexec_load with the product's argv; its _text fix applied.
    assert run.load.argv[:3] == ("/sbin/kexec", "-p", "-c")
    assert "console=ttyAMA0" in run.load.cmdline and "crashkernel" not in run.load.cmdline
    st = _line_value(run.console, STEXT)
    tx = _line_value(run.console, TEXT)
    fixed = kexec_tools.kallsyms_with_text(f"{st} T _stext\n", "aarch64")
    assert fixed is not None and fixed.startswith(f"{tx} T _text\n"), (st, tx)
    assert "Can't get the symbol of _text" not in run.console

    dump = check_dump(disk, tmp_path, sysroot, run.console)
    assert dump.size > 4 << 20   # -d 31 of 1 GiB: ~25 MB measured


def _line_value(console: str, marker: str) -> str:
    for line in console.splitlines():
        if line.startswith(marker + " "):
            return line.split()[-1]
    raise AssertionError(f"no {marker!r} line on the console:\n{console[-3000:]}")
