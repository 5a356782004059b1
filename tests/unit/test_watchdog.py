"""Running hardware watchdogs (mkkdumprd/watchdog.py) on fake sysfs trees, and the watchdog
module in real builds (the Debian test kernel's i6300esb). The feeding itself:
test_build_templates.py (the script) and tests/vm/test_crash_watchdog.py (a real reset)."""

from __future__ import annotations

from pathlib import Path

from mkkdumprd import watchdog
from mkkdumprd.assemble.builder import BuildRequest, assemble
from mkkdumprd.assemble.machine_facts import machine_facts
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.host import Host
from tests.support.debian_kernel import Kernel
from tests.support.fake_network import FakeNet


def add_watchdog(root: Path, name: str, driver: str | None, state: str,
                 module: str | None = "i6300esb", identity: str = "i6300ESB timer") -> None:
    """/sys/class/watchdog/NAME as the kernel shows it. `driver`: its parent device's
    driver (with `module`, None = built in); driver None = no parent device (softdog, and
    i6300esb in Linux 6.1), its `module` then a holder of the watchdog core module."""
    d = root / "sys/devices/virtual/watchdog" / name
    if driver is not None:
        pci = root / "sys/devices/pci0000:00/0000:00:05.0"
        d = pci / "watchdog" / name
        drv = root / "sys/bus/pci/drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        if module and not (drv / "module").is_symlink():
            (root / "sys/module" / module).mkdir(parents=True, exist_ok=True)
            (drv / "module").symlink_to(f"../../../../module/{module}")
        pci.mkdir(parents=True, exist_ok=True)
        if not (pci / "driver").is_symlink():
            (pci / "driver").symlink_to(f"../../../bus/pci/drivers/{driver}")
    elif module:
        holders = root / "sys/module/watchdog/holders"
        holders.mkdir(parents=True, exist_ok=True)
        (root / "sys/module" / module).mkdir(parents=True, exist_ok=True)
        (holders / module).symlink_to(f"../../{module}")
    d.mkdir(parents=True)
    if driver is not None:
        (d / "device").symlink_to("../..")
    for attr, value in (("state", state), ("identity", identity), ("timeout", "30")):
        (d / attr).write_text(value + "\n")
    link = root / "sys/class/watchdog" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path("../..") / d.relative_to(root / "sys"))


def test_only_running_hardware_watchdogs(tmp_path: Path) -> None:
    add_watchdog(tmp_path, "watchdog0", "i6300ESB timer", "active")
    add_watchdog(tmp_path, "watchdog1", None, "active", module="softdog",
                 identity="Software Watchdog")
    add_watchdog(tmp_path, "watchdog2", "i6300ESB timer", "inactive")
    view = Host(tmp_path)
    assert watchdog.running(view) == [
        watchdog.Watchdog("watchdog0", "i6300ESB timer", "i6300ESB timer", ("i6300esb",), 30)]
    assert watchdog.settings(watchdog.running(view)).identities == ("i6300ESB timer",)
    assert machine_facts(view, hostonly=True) == {"watchdog"}
    assert machine_facts(view, hostonly=False) == frozenset()
    assert watchdog.running(Host(tmp_path / "none")) == []


def test_parentless_watchdog_module_from_the_watchdog_core_s_users(tmp_path: Path) -> None:
    # Linux 6.1's i6300esb: /sys/devices/virtual/watchdog/watchdog0, no device link
    add_watchdog(tmp_path, "watchdog0", None, "active")
    add_watchdog(tmp_path, "watchdog1", None, "inactive", module="softdog",
                 identity="Software Watchdog")
    [dog] = watchdog.running(Host(tmp_path))
    assert (dog.driver, dog.modules) == (None, ("i6300esb",))
    assert watchdog.unknown_drivers([dog]) == []


def test_builtin_driver_is_fed_but_adds_no_module(tmp_path: Path) -> None:
    add_watchdog(tmp_path, "watchdog0", "iTCO_wdt", "active", module=None,
                 identity="iTCO_wdt")
    [dog] = watchdog.running(Host(tmp_path))
    assert (dog.driver, dog.modules) == ("iTCO_wdt", ())
    assert watchdog.settings([dog]).identities == ("iTCO_wdt",)
    assert watchdog.unknown_drivers([dog]) == []
    add_watchdog(tmp_path, "watchdog1", None, "active", module=None, identity="mystery")
    assert watchdog.unknown_drivers(watchdog.running(Host(tmp_path))) == [
        "watchdog watchdog1 (mystery) runs, but its driver module is unknown: if it is not "
        "built into the kernel, add it with --add-drivers, or a long dump may be reset"]


def _nfs_machine(root: Path) -> Host:
    net = FakeNet(root)
    net.virtio_nic("eth0", "52:54:00:00:00:01")
    net.addr4("eth0", "10.0.2.15/24")
    net.route4("eth0", "0.0.0.0/0", "10.0.2.2")
    net.commit()
    return Host(root)


def test_a_running_watchdog_puts_its_driver_and_feeder_in_the_image(
        kernel: Kernel, tmp_path: Path) -> None:
    machine = _nfs_machine(tmp_path)
    cfg = KdumpConfig(target=Target(TargetKind.NFS, server="10.0.2.100:/export"))

    def build() -> tuple[list[str], set[str], str]:
        r = assemble(BuildRequest(cfg, kernel.kver, kernel.kmoddir, Host.this_machine(),
                                  machine, "x86_64", hostonly=True))
        [init] = [e.data for e in r.spec.complete() if str(e.path) == "/init"]
        assert init is not None
        return list(r.modules), set(r.kernel_modules), init.decode()

    modules, kmods, init = build()
    assert "watchdog" not in modules and "i6300esb" not in kmods
    assert "30-watchdog.sh" not in init
    add_watchdog(tmp_path, "watchdog0", "i6300ESB timer", "active")
    modules, kmods, init = build()
    assert "watchdog" in modules and "i6300esb" in kmods
    # sourced after the modules are loaded, before the dump
    assert init.index("20-modules.sh") < init.index("30-watchdog.sh") < \
        init.index("90-kdump.sh")


def test_a_watchdog_started_or_stopped_since_the_build_makes_the_image_stale(
        kernel: Kernel, tmp_path: Path) -> None:
    from mkkdumprd.assemble.builder import build_image
    from mkkdumprd.assemble.freshness import check_fresh

    machine = _nfs_machine(tmp_path / "m")
    cfg = KdumpConfig(target=Target(TargetKind.NFS, server="10.0.2.100:/export"))
    req = BuildRequest(cfg, kernel.kver, kernel.kmoddir, Host.this_machine(), machine,
                       "x86_64", hostonly=True, output=tmp_path / "img")
    build_image(req)
    assert check_fresh(req, tmp_path / "img").up_to_date
    add_watchdog(tmp_path / "m", "watchdog0", None, "active")
    assert check_fresh(req, tmp_path / "img").reasons == (
        "a hardware watchdog runs now (watchdog0 (i6300ESB timer)) and the image does not "
        "feed it",)
    build_image(req)
    assert check_fresh(req, tmp_path / "img").up_to_date
    (tmp_path / "m/sys/class/watchdog/watchdog0").unlink()
    assert check_fresh(req, tmp_path / "img").reasons == (
        "no hardware watchdog runs now; the image was built to feed one",)
