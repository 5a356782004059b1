"""A hardware watchdog left running by the first kernel, and a dump that takes longer than
its timeout: the capture image must keep feeding it, or the machine is reset mid-dump.

QEMU's i6300esb (expiry action: reset, which -no-reboot turns into QEMU's exit). The first
stage loads i6300esb with nowayout=1 (the capture kernel cannot switch it off, as with
many BMC watchdogs) and a HEARTBEAT s timeout, opens /dev/watchdog0 (which arms it) and
crashes. The capture image comes from a host-only build of a machine whose sysfs shows
that watchdog running; its kdump_pre sleeps SLEEP s, longer than both the first kernel's
timeout and the capture kernel's (the driver's default 30 s), then the dump goes over NFS.
The negative control is the same crash with an image built for the machine without a
running watchdog: no driver, no feeding, and the guest is reset before the dump.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkkdumprd.host import Host
from mkkdumprd.image.spec import ImageSpec, file_entry
from tests.support.debian_kernel import Kernel
from tests.support.fake_network import FakeNet
from tests.vm.harness import vmcore
from tests.vm.harness.first_stage import (
    CAPTURE_APPEND,
    CHECK_LOADED_AND_CRASH,
    FIRST_KERNEL_APPEND,
    LOAD_FAILED_MARKER,
    LOADED_MARKER,
)
from tests.vm.harness.images import (
    busybox_entries,
    host_binary,
    init_entry,
    module_load_order,
    require_tool,
    write_initramfs,
)
from tests.vm.harness.qemu import VM, VMSpec
from tests.vm.servers import GUEST_SERVER_IP, NfsServer

DUMP_DIR = re.compile(r"10\.0\.2\.15-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")
# The first kernel's timeout must outlast the capture kernel's way to its modules (under TCG
# ~35-40 s from the crash: purgatory's sha256 check and the boot); the dump, stretched by
# kdump_pre, must outlast both that timeout and the capture kernel's (the driver's 30 s).
HEARTBEAT = 75
SLEEP = 60
ARMED = "MKKDUMPRD-TEST: watchdog armed"
SAVED = "kdump: dump saved to "


def _first_stage(kernel: Kernel, capture: Path, out: Path) -> Path:
    kos = module_load_order(kernel.kmoddir, kernel.kver, ["i6300esb"])   # watchdog core first
    assert kos[-1].name.startswith("i6300esb.ko")
    deps = "".join(f"insmod /{ko.name}\n" for ko in kos[:-1])
    init = f"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
{deps}insmod /{kos[-1].name} heartbeat={HEARTBEAT} nowayout=1
# opening the device arms the watchdog; fd 3 stays open (and unfed) through the crash
exec 3>/dev/watchdog0 && printf x >&3 &&
    echo "{ARMED} ($(cat /sys/class/watchdog/watchdog0/timeout) s)"
kexec -s -p /boot/vmlinuz --initrd=/boot/capture.img --append={shlex.quote(CAPTURE_APPEND)}
rc=$?
# the last ping (loading under TCG takes a while): the timeout runs from here
printf x >&3
(exit $rc)
""" + CHECK_LOADED_AND_CRASH.format(failed=LOAD_FAILED_MARKER, loaded=LOADED_MARKER,
                                    tag="MKKDUMPRD-TEST")
    spec = ImageSpec()
    spec.extend(busybox_entries())
    spec.extend(host_binary(require_tool("kexec"), "loads the capture kernel"))
    for ko in kos:
        spec.add(file_entry(f"/{ko.name}", ko, "the watchdog driver", mode=0o644))
    spec.add(file_entry("/boot/vmlinuz", kernel.vmlinuz, "capture kernel", mode=0o644))
    spec.add(file_entry("/boot/capture.img", capture, "capture image under test", mode=0o644))
    spec.add(init_entry(init))
    return write_initramfs(spec, out, "none")


def _machine(root: Path, watchdog_running: bool) -> Host:
    """The guest as a host-only build sees it: a virtio NIC with slirp's address, the NFS
    export mounted, and i6300esb's watchdog0 (running or not)."""
    net = FakeNet(root)
    net.virtio_nic("eth0", "52:54:00:12:34:56")
    net.addr4("eth0", "10.0.2.15/24")
    net.route4("eth0", "0.0.0.0/0", "10.0.2.2")
    net.commit()
    net.write("/proc/self/mountinfo",
              "40 1 0:40 / /mnt/dumps rw,relatime - nfs4 10.0.2.100:/export rw,vers=4.1,"
              "proto=tcp,sec=sys,addr=10.0.2.100\n")
    # as Linux 6.1 shows i6300esb's watchdog: no parent device (devices/virtual), the
    # driver a user of the watchdog core module
    dog = "sys/devices/virtual/watchdog/watchdog0"
    for attr, value in (("state", "active" if watchdog_running else "inactive"),
                        ("identity", "i6300ESB timer"), ("timeout", str(HEARTBEAT))):
        net.write(f"{dog}/{attr}", value + "\n")
    net.symlink("sys/class/watchdog/watchdog0", f"../../{dog[4:]}")
    (root / "sys/module/i6300esb").mkdir(parents=True)
    net.symlink("sys/module/watchdog/holders/i6300esb", "../../i6300esb")
    return Host(root)


@pytest.fixture
def hook_dir() -> Iterator[Path]:
    # Not under /tmp: the capture image mounts tmpfs there, which would hide the hook.
    d = Path(tempfile.mkdtemp(prefix="mkkdumprd-vm-watchdog-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d)


def _crash(kernel: Kernel, tmp_path: Path, hook_dir: Path,
           watchdog_running: bool) -> tuple[str, NfsServer]:
    from mkkdumprd.assemble.builder import BuildRequest, build_image
    from mkkdumprd.config.kdumpconf import load_kdump_conf

    pre = hook_dir / "slow-pre"
    pre.write_text(f"#!/bin/sh\necho 'kdump_pre: a slow dump, {SLEEP} s'\nsleep {SLEEP}\n")
    pre.chmod(0o755)
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"nfs {GUEST_SERVER_IP}:/export\npath /\nkdump_pre {pre}\n"
                    "core_collector makedumpfile -l --message-level 7 -d 31\n"
                    "final_action poweroff\n")
    result = build_image(BuildRequest(
        config=load_kdump_conf(conf), kver=kernel.kver, kmoddir=kernel.kmoddir,
        sysroot=Host.this_machine(), machine=_machine(tmp_path / "guest", watchdog_running),
        arch="x86_64", hostonly=True, output=tmp_path / "capture.img"))
    assert ("i6300esb" in result.kernel_modules) is watchdog_running
    first = _first_stage(kernel, tmp_path / "capture.img", tmp_path / "first-stage.img")
    srv = NfsServer(tmp_path / "nfs")
    with srv.start():
        spec = VMSpec(kernel.vmlinuz, first, FIRST_KERNEL_APPEND,
                      guestfwd=(srv.guestfwd(2049),),
                      extra_args=("-device", "i6300esb", "-action", "watchdog=reset"))
        with VM(spec, tmp_path / "console.log", 300) as vm:
            vm.wait_for(f"{LOADED_MARKER}|{LOAD_FAILED_MARKER}")
            vm.wait_exit()
            console = vm.console()
    assert f"{ARMED} ({HEARTBEAT} s)" in console, console[-3000:]
    return console.split(LOADED_MARKER, 1)[-1], srv


@pytest.mark.vm
def test_running_watchdog_is_fed_through_a_dump_longer_than_its_timeout(
        kernel: Kernel, tmp_path: Path, hook_dir: Path) -> None:
    """~2 min under TCG (SLEEP s of it on purpose)."""
    console, srv = _crash(kernel, tmp_path, hook_dir, watchdog_running=True)
    assert re.search(r"kdump: watchdog: feeding /dev/watchdog\d \(i6300ESB timer, timeout "
                     r"\d+ s\) every \d+ s", console), console[-4000:]
    assert f"kdump_pre: a slow dump, {SLEEP} s" in console
    assert SAVED in console, f"no dump (reset by the watchdog?):\n{console[-4000:]}"
    assert re.search(r"kdump: watchdog: /dev/watchdog\d closed with the magic close", console)
    assert "reboot: Power down" in console, console[-4000:]
    dumps = [p for p in srv.export.iterdir() if DUMP_DIR.fullmatch(p.name)]
    assert len(dumps) == 1
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(dumps[0] / "vmcore", tmp_path / "dmesg.txt"))


@pytest.mark.vm
@pytest.mark.long  # ~1.8 min under TCG: the negative control (the guest is reset mid-dump)
def test_without_feeding_the_watchdog_resets_the_guest_mid_dump(
        kernel: Kernel, tmp_path: Path, hook_dir: Path) -> None:
    """The negative control (~1.5 min under TCG): same crash, image for the machine
    without a running watchdog. QEMU ends (the watchdog's reset under -no-reboot) while
    kdump_pre still sleeps: no dump, no final action."""
    console, srv = _crash(kernel, tmp_path, hook_dir, watchdog_running=False)
    assert f"kdump_pre: a slow dump, {SLEEP} s" in console, console[-4000:]
    assert "kdump: watchdog:" not in console
    assert SAVED not in console and "reboot: Power down" not in console, console[-4000:]
    assert "kdump: dump failed" not in console
    assert not [p for p in srv.export.iterdir() if DUMP_DIR.fullmatch(p.name)]
