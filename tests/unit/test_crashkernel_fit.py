"""load and status compare the live reservation with the estimate for the loaded image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.crashkernel.fit import reservation_fit
from mkkdumprd.host import Host
from mkkdumprd.image import integrity
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image
from mkkdumprd.loader import live
from tests.support.debian_kernel import debian_kernel
from tests.support.fake_kexec import FakeKexec

KVER = "6.1.0-56-amd64"

M = 1 << 20
X86 = load_arch("x86_64")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files = {
        "proc/cmdline": f"BOOT_IMAGE=/boot/vmlinuz-{KVER} root=/dev/vda1 crashkernel=96M\n",
        "proc/sys/kernel/osrelease": KVER + "\n",
        "proc/meminfo": "MemTotal:        4194304 kB\n",
        "sys/kernel/kexec_crash_size": f"{96 * M}\n",
        "sys/kernel/kexec_crash_loaded": "0\n",
        "sys/devices/system/cpu/possible": "0-3\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "boot").mkdir()
    shutil.copy(debian_kernel().vmlinuz, tmp_path / f"boot/vmlinuz-{KVER}")
    spec = ImageSpec()
    # 64 MiB that compress to almost nothing: small to load, big once unpacked
    spec.add(data_entry("/big", bytes(64 * M), "test"))
    write_image(spec, tmp_path / f"boot/initramfs-{KVER}kdump.img")
    return tmp_path


def test_reservation_below_the_estimate_is_flagged(root: Path) -> None:
    fit = reservation_fit(Host(root), X86, f"/boot/vmlinuz-{KVER}",
                          f"/boot/initramfs-{KVER}kdump.img")
    assert fit is not None and fit.short
    assert fit.reserved == 96 * M and fit.needed > 96 * M
    assert "crashkernel=" in fit.warning() and "below the" in fit.warning()
    (root / "sys/kernel/kexec_crash_size").write_text(f"{512 * M}\n")
    fit = reservation_fit(Host(root), X86, f"/boot/vmlinuz-{KVER}",
                          f"/boot/initramfs-{KVER}kdump.img")
    assert fit is not None and not fit.short


def test_load_and_status_warn(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # this test's machine is the fake tree: its kernel is the fake
    monkeypatch.setattr(live, "RUNNING", FakeKexec(root).kernel)
    r = CliRunner()
    res = r.invoke(main, ["load", "--root", str(root), "--arch", "x86_64"])
    assert res.exit_code == 0, res.output
    assert "mkkdumprd: warning: the crashkernel reservation (96 MiB) is below" in res.stderr
    res = r.invoke(main, ["status", "--root", str(root)])
    assert res.exit_code == 0 and "warning:      the crashkernel reservation" in res.stdout
    res = r.invoke(main, ["status", "--root", str(root), "--json"])
    doc = json.loads(res.stdout)
    assert doc["reservation_fit"]["below_estimate"] is True
    assert doc["reservation_fit"]["reserved"] == 96 * M
    assert doc["reservation_fit"]["estimate"] > 96 * M


def test_no_estimate_no_warning(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an image that cannot be read: status still works, and says nothing about the fit
    image = root / f"boot/initramfs-{KVER}kdump.img"
    image.write_bytes(b"070701" + bytes(4090))
    # not written by mkkdumprd: no digest record (with the build's record it is refused)
    integrity.record_path(image).unlink(missing_ok=True)
    # this test's machine is the fake tree: its kernel is the fake
    monkeypatch.setattr(live, "RUNNING", FakeKexec(root).kernel)
    r = CliRunner()
    assert r.invoke(main, ["load", "--root", str(root), "--arch", "x86_64"]).exit_code == 0
    res = r.invoke(main, ["status", "--root", str(root), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["reservation_fit"] is None


def test_cma_area_counts_but_never_for_what_kexec_places(root: Path) -> None:
    """A live ,cma area (sysfs only; CMA is not in /proc/iomem) adds to the fixed part;
    the fixed part must still hold the kernel's load window and the image."""
    host = Host(root)
    new = root / "sys/kernel/kexec"
    new.mkdir(parents=True)
    # 32 MiB fixed: the new name wins over the compat kexec_crash_size (96 MiB)
    (new / "crash_size").write_text(f"{32 * M}\n")
    (new / "crash_cma_ranges").write_text("100000000-11fffffff\n")      # 512 MiB
    fit = reservation_fit(host, X86, f"/boot/vmlinuz-{KVER}", f"/boot/initramfs-{KVER}kdump.img")
    assert fit is not None and fit.cma == 512 * M and fit.reserved == 32 * M
    assert fit.fixed_short and fit.short
    w = fit.warning()
    assert "a CMA area cannot hold them" in w
    assert fit.advice.startswith("crashkernel=") and ",cma" in fit.advice and fit.advice in w
    (new / "crash_size").write_text(f"{fit.fixed_needed}\n")
    fit = reservation_fit(host, X86, f"/boot/vmlinuz-{KVER}", f"/boot/initramfs-{KVER}kdump.img")
    assert fit is not None and not fit.fixed_short and not fit.short
    (new / "crash_cma_ranges").write_text("100000000-1003fffff\n")      # 4 MiB: too little
    fit = reservation_fit(host, X86, f"/boot/vmlinuz-{KVER}", f"/boot/initramfs-{KVER}kdump.img")
    assert fit is not None and fit.short and not fit.fixed_short
    assert "fixed +" in fit.warning() and "CMA) is below the" in fit.warning()


def test_showmem_reads_the_new_name_and_shows_the_cma_part(tmp_path: Path) -> None:
    new = tmp_path / "sys/kernel/kexec"
    new.mkdir(parents=True)
    (new / "crash_size").write_text(f"{68 * M}\n")
    (new / "crash_cma_ranges").write_text("30000000-33ffffff\n")
    r = CliRunner().invoke(main, ["showmem", "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "Reserved 68M memory for crash kernel" in r.output
    assert "plus 64M of CMA" in r.output
