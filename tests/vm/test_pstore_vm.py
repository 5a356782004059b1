"""pstore and the outcome record across a real warm reset (QEMU TCG, Debian's kernel).

The region is the one `mkkdumprd pstore setup` proposes for the guest's RAM (the words
`--apply` writes), ramoops loaded at boot with the command line's ramoops.* words as modprobe
does; the capture kernel gets what the loader's capture command line keeps of them.

1. A ramoops region (memmap= + ramoops, kdump not loaded): the guest panics, panic=1
   reboots it, QEMU's reset keeps RAM, and the second boot's `mkkdumprd pstore` archives
   the dmesg record that `report` then shows with its panic line.
2. A capture image whose NFS server is down: the capture kernel loads ramoops from its
   command line (max_reason=4), its outcome record goes into the kernel log, the reboot's
   kmsg dump keeps it, and after the reset `status` shows "failed: cannot mount NFS ...".

Each test is one QEMU run through both boots; the second boot runs the project's Python.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness.first_stage import CAPTURE_APPEND
from tests.vm.harness.pstore_guest import (
    DONE,
    FIRST_BOOT,
    GUEST_RAM,
    SECOND_BOOT,
    RebootingVMSpec,
    build_guest,
    capture_ramoops_words,
    ramoops_words,
)
from tests.vm.harness.python_guest import parse_steps
from tests.vm.harness.qemu import VM
from tests.vm.servers import GUEST_SERVER_IP, NfsServer, free_port

# The region is exactly what `mkkdumprd pstore setup` proposes for the guest's RAM.
WORDS = ramoops_words()
APPEND = f"console=ttyS0 {' '.join(WORDS)} nokaslr panic=1 loglevel=4"
WAIT = 10


def _iomem_ranges(text: str) -> list[tuple[int, int, str]]:
    out = []
    for line in text.splitlines():
        if not line.startswith(" ") and " : " in line:
            span, name = line.strip().split(" : ", 1)
            lo, hi = span.split("-")
            out.append((int(lo, 16), int(hi, 16), name))
    return out


def _region_as_proposed(steps_setup: str, iomem: str) -> None:
    """The guest ran with the proposed words: `pstore setup` sees them on its command line,
    and /proc/iomem shows the region reserved inside the RAM the proposal was made for."""
    setup = json.loads(steps_setup)
    assert setup["running_ramoops"] == [w for w in WORDS if w.startswith("ramoops.")], setup
    addr = int(next(w for w in WORDS if w.startswith("ramoops.mem_address=")).split("=")[1],
               16)
    ranges = _iomem_ranges(iomem)
    assert (addr, addr + 0xFFFFF, "Reserved") in ranges, iomem
    ram = [(lo, hi) for lo, hi, name in ranges if name == "System RAM" and lo >= GUEST_RAM[0]]
    assert ram[0][0] == GUEST_RAM[0] and ram[-1][1] == GUEST_RAM[1], iomem


def _second_boot(console: str) -> dict[str, object]:
    assert console.count(FIRST_BOOT) == 1 and SECOND_BOOT in console, console[-4000:]
    steps = parse_steps(console.split(SECOND_BOOT, 1)[1])
    for name in ("pstore", "report-json", "status", "left", "setup", "iomem"):
        assert name in steps, f"no step {name}:\n{console[-4000:]}"
    assert steps["pstore"].rc == 0, steps["pstore"].output
    assert steps["left"].output.strip() == "", "pstore was not emptied"
    _region_as_proposed(steps["setup"].output, steps["iomem"].output)
    return {"report": json.loads(steps["report-json"].output),
            "status": json.loads(steps["status"].output),
            "pstore": steps["pstore"].output, "text": steps["report"].output}


@pytest.mark.vm  # 150 s here on a loaded 2-core machine (two boots, Python in the guest)
def test_ramoops_panic_without_kdump_is_archived_after_reset(kernel: Kernel,
                                                             tmp_path: Path) -> None:
    initrd = build_guest(kernel, tmp_path / "guest.img")
    spec = RebootingVMSpec(kernel.vmlinuz, initrd, APPEND)
    with VM(spec, tmp_path / "console.log", 300) as vm:
        vm.wait_for(DONE)
        console = vm.console()
    out = _second_boot(console)
    assert "moved /sys/fs/pstore/dmesg-ramoops-0 -> /var/crash/127.0.0.1-" in out["pstore"]
    report = out["report"]
    assert isinstance(report, list) and len(report) == 1, report
    crash = report[0]
    assert crash["panic"] == "Kernel panic - not syncing: sysrq triggered crash", crash
    assert crash["result"] == "no dump: only pstore records"
    assert "dmesg-ramoops-0" in crash["pstore"]
    assert "panic:     Kernel panic - not syncing: sysrq triggered crash" in out["text"]


@pytest.mark.vm
@pytest.mark.long  # 248 s here on a loaded 2-core machine: three boots and a 10 s NFS wait
def test_failed_nfs_dump_outcome_survives_the_reboot(kernel: Kernel, tmp_path: Path,
                                                     build_capture: BuildImage) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"nfs {GUEST_SERVER_IP}:/export\npath /\nfailure_action reboot\n")
    image = build_capture(["-c", str(conf)], tmp_path / "capture.img", drivers=["virtio_net"])
    srv = NfsServer(tmp_path / "nfs")
    srv.port = free_port()          # the relay points at a loopback port where nothing listens
    append = f"{CAPTURE_APPEND} kdump.timeout={WAIT} {capture_ramoops_words(APPEND)}".replace(
        "panic=-1", "panic=1")
    initrd = build_guest(kernel, tmp_path / "guest.img", (image, append))
    spec = RebootingVMSpec(kernel.vmlinuz, initrd, f"{APPEND} crashkernel=256M",
                           guestfwd=(srv.guestfwd(2049),))
    with VM(spec, tmp_path / "console.log", 420) as vm:
        vm.wait_for(DONE)
        console = vm.console()
    capture = console.split(FIRST_BOOT, 1)[1].split(SECOND_BOOT, 1)[0]
    assert "ramoops loaded: the outcome record is kept in pstore" in capture, capture[-4000:]
    assert "kdump-outcome: result=failed" in capture
    out = _second_boot(console)
    status = out["status"]
    assert isinstance(status, dict)
    last = status["last_crash"]
    assert last is not None, out
    assert last["outcome"]["result"] == "failed", last
    assert last["result"].startswith(f"failed: cannot mount NFS {GUEST_SERVER_IP}:/export "
                                     "within"), last
    assert last["outcome"]["targets"][0]["result"] == "failed"
