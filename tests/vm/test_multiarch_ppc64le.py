"""ppc64le end to end under QEMU TCG (pseries, SLOF): Debian bookworm's powerpc64le kernel (an
ELF vmlinux, 64K pages), the capture image cross-built with `mkkdumprd build --arch ppc64le
--sysroot DIR`, loaded through the kexec_load fallback (Debian ppc64el has no
kexec_file_load), crash, vmcore on a virtio ext4 disk read back by ppc64el makedumpfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.foreign_sysroot import Sysroot, foreign_sysroot
from tests.vm.harness.multiarch import check_dump, ext4_dump_setup, foreign_crash_cycle

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.multiarch]


@pytest.fixture(scope="module")
def sysroot() -> Sysroot:
    return foreign_sysroot("ppc64le")


def test_ppc64le_crash_dump_to_ext4(sysroot: Sysroot, tmp_path: Path) -> None:
    dump_to = ext4_dump_setup(sysroot, tmp_path)
    disk = dump_to.disk
    run = foreign_crash_cycle(sysroot, dump_to.image, [disk], tmp_path)

    assert sysroot.kernel.name.startswith("vmlinux-")      # the ELF Debian ships, as is
    assert run.load.argv[:4] == ("/sbin/kexec", "-p", "-c", "/boot/vmlinuz")
    assert "console=hvc0" in run.load.cmdline and "maxcpus=1" in run.load.cmdline
    assert "_text" not in run.console.split("capture kernel loaded")[0]
    dump = check_dump(disk, tmp_path, sysroot, run.console)
    assert dump.size > 1 << 20
