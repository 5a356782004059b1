"""Fixtures for the QEMU tests: the real Debian kernel, QEMU itself, product builds.

Nothing here skips: CI installs QEMU and the tools (dev/setup), so a missing piece is a
failure with a message saying what to install.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.harness.images import require_tool
from tests.vm.harness.qemu import qemu_binary

REPO = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="session", autouse=True)
def vm_tools() -> None:
    qemu_binary()
    for tool in ("debugfs", "mkfs.ext4", "makedumpfile", "kexec", "busybox"):
        require_tool(tool)


BuildImage = Callable[..., Path]
VIRTIO_DRIVERS = ("virtio_pci", "virtio_blk")


def run_mkkdumprd(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The product's CLI as users run it, from this checkout's interpreter."""
    return subprocess.run([sys.executable, "-m", "mkkdumprd", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def build_capture(kernel: Kernel) -> BuildImage:
    """`mkkdumprd build` for the test kernel, image built for another machine (a VM)."""

    def build(args: Sequence[str], out: Path, drivers: Sequence[str] = ()) -> Path:
        argv = ["build", "--kver", kernel.kver, "--kmoddir", str(kernel.kmoddir),
                "--no-hostonly", "--add-drivers", ",".join([*VIRTIO_DRIVERS, *drivers]),
                *args, "-o", str(out)]
        r = run_mkkdumprd(argv)
        if r.returncode != 0 or not out.exists():
            pytest.fail(f"mkkdumprd {' '.join(argv)} failed (rc {r.returncode}):\n"
                        f"{r.stdout}{r.stderr}")
        return out

    return build
