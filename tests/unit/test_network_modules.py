"""The network, nfs and ssh modules in real builds: the Debian test kernel's modules, this
machine's busybox, ssh and makedumpfile; fake /proc and /sys trees for host-only builds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import BuildRequest, BuildResult, assemble
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, Kind
from tests.support import shellcheck
from tests.support.debian_kernel import Kernel
from tests.support.fake_network import FakeNet

DRIVERS = ("virtio_pci", "virtio_net")




def _build(kernel: Kernel, config: KdumpConfig, system: Host | None = None,
           hostonly: bool = False, ip: str | None = None) -> BuildResult:
    return assemble(BuildRequest(config, kernel.kver, kernel.kmoddir, Host.this_machine(),
                                 system or Host.this_machine(), "x86_64", hostonly=hostonly,
                                 add_drivers=DRIVERS, ip=ip))


def _entry(r: BuildResult, path: str) -> Entry:
    for e in r.spec.complete():
        if str(e.path) == path or str(e.path) == "/usr" + path:
            return e
    raise AssertionError(f"{path} not in the image")


def _text(e: Entry) -> str:
    assert e.data is not None
    return e.data.decode()


def _scripts_pass_shellcheck(r: BuildResult, tmp_path: Path) -> None:
    """Every rendered script of the image, checked on its own (SC1091: the scripts source
    the image's /lib/kdump, absent here; test_build_templates follows those sources)."""
    files = []
    for e in r.spec.complete():
        p = str(e.path)
        if e.data is not None and (p == "/init" or p.endswith(".sh")):
            f = tmp_path / "image" / p.lstrip("/")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(e.data)
            files.append(f)
    assert len(files) >= 8
    shellcheck.assert_clean(files, exclude=["SC1091"])


@pytest.fixture
def ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")],
                   check=True)
    (tmp_path / ".ssh").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_ssh_image_has_client_key_host_key_and_passwd(kernel: Kernel, ssh_home: Path,
                                                     tmp_path: Path) -> None:
    host_pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7hostkey"
    (ssh_home / ".ssh/known_hosts").write_text(f"[10.0.2.100]:2222 ssh-rsa AAAAother\n"
                                               f"10.0.2.100 {host_pub}\n")
    cfg = KdumpConfig(target=Target(TargetKind.SSH, server="root@10.0.2.100"),
                      path="/srv/it's dumps", sshkey=str(ssh_home / "key"))
    r = _build(kernel, cfg)
    assert {"network", "ssh"} <= set(r.modules) and "virtio_net" in r.kernel_modules
    key = _entry(r, "/root/.ssh/kdump_id")
    assert key.source == ssh_home / "key" and key.mode == 0o600
    assert _text(_entry(r, "/root/.ssh/known_hosts")) == f"10.0.2.100 {host_pub}\n"
    assert _text(_entry(r, "/etc/passwd")).startswith("root:x:0:0:")
    assert any(str(b).endswith("/ssh") for b in r.binaries)
    assert any("libcrypto" in str(e.path) for e in r.spec.complete())
    for script in ("/lib/kdump/target.sh", "/lib/kdump/network.sh", "/lib/kdump/udhcpc.sh"):
        subprocess.run(["sh", "-n"], input=_entry(r, script).data, check=True)
    assert "KDUMP_NET_MODE=dhcp\n" in _text(_entry(r, "/lib/kdump/network.sh"))
    target = _text(_entry(r, "/lib/kdump/target.sh"))
    assert "KDUMP_SSH_PATH='/srv/it'\"'\"'s dumps'\n" in target
    assert (" -i /root/.ssh/kdump_id -o BatchMode=yes -o StrictHostKeyChecking=yes "
            "-o UserKnownHostsFile=/root/.ssh/known_hosts ") in target
    assert not any(str(e.path).endswith(".env") for e in r.spec.complete())
    _scripts_pass_shellcheck(r, tmp_path)
    applets = {str(e.path).rsplit("/", 1)[1] for e in r.spec.complete()
               if e.kind is Kind.SYMLINK and e.target and e.target.endswith("busybox")}
    assert {"ip", "udhcpc", "timeout", "tail"} <= applets


def test_ssh_without_recorded_host_key_or_key_fails_with_the_fix(
        kernel: Kernel, ssh_home: Path) -> None:
    cfg = KdumpConfig(target=Target(TargetKind.SSH, server="root@10.0.2.100"),
                      sshkey=str(ssh_home / "key"))
    with pytest.raises(OperationError, match=r"no host key for 10\.0\.2\.100.*propagate"):
        _build(kernel, cfg)
    cfg = KdumpConfig(target=Target(TargetKind.SSH, server="root@10.0.2.100"),
                      sshkey=str(ssh_home / "missing"))
    with pytest.raises(OperationError, match="does not exist; create and install it"):
        _build(kernel, cfg)


def test_nfs_image_for_another_machine(kernel: Kernel, tmp_path: Path) -> None:
    cfg = KdumpConfig(target=Target(TargetKind.NFS, server="10.0.2.100:/export"))
    r = _build(kernel, cfg)
    assert "nfsv4" in r.kernel_modules and "sunrpc" in r.kernel_modules
    env = _text(_entry(r, "/lib/kdump/target.sh"))
    assert "KDUMP_NFS_SOURCE=10.0.2.100:/export\n" in env
    assert "KDUMP_NFS_VERSIONS='4.2 4.1 4.0'\n" in env
    subprocess.run(["sh", "-n"], input=_entry(r, "/lib/kdump/target.sh").data, check=True)
    _scripts_pass_shellcheck(r, tmp_path)


def test_user_ip_sets_a_static_capture_network(kernel: Kernel) -> None:
    cfg = KdumpConfig(target=Target(TargetKind.NFS, server="10.0.2.100:/export"))
    dhcp = _text(_entry(_build(kernel, cfg), "/lib/kdump/network.sh"))
    r = _build(kernel, cfg, ip="10.0.2.15::10.0.2.2:255.255.255.0::eth0:none")
    env = _text(_entry(r, "/lib/kdump/network.sh"))
    assert "KDUMP_NET_IPARG=10.0.2.15::10.0.2.2:255.255.255.0::eth0:none" in env
    assert env != dhcp


def test_build_cli_rejects_a_malformed_ip() -> None:
    from click.testing import CliRunner

    from mkkdumprd.cli import main

    r = CliRunner().invoke(main, ["build", "--target", "nfs:10.0.2.100:/export",
                                  "--no-hostonly", "--ip", "10.0.2.15::nonsense:99"])
    assert r.exit_code == 2
    assert "--ip '10.0.2.15::nonsense:99'" in r.output


def test_nfs_host_only_vlan_on_bond(kernel: Kernel, tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.nic("eth0", "52:54:00:00:00:01", pci="0000:00:03.0")
    net.nic("eth1", "52:54:00:00:00:02", pci="0000:00:04.0")
    net.bond("bond0", "52:54:00:00:00:01", ["eth0", "eth1"])
    net.vlan("bond0.7", "52:54:00:00:00:01", "bond0", 7)
    net.addr4("bond0.7", "10.7.0.5/24")
    net.route4("bond0.7", "0.0.0.0/0", "10.7.0.1")
    net.commit()
    net.write("/etc/fstab", "nas:/dumps /var/crash nfs nfsvers=3,ro,nofail 0 0\n")
    net.write("/etc/hosts", "192.0.2.9 nas\n")
    net.write("/etc/resolv.conf", "nameserver 192.0.2.53\n")
    cfg = KdumpConfig(target=Target(TargetKind.NFS, server="nas:/dumps"))
    r = _build(kernel, cfg, system=Host(tmp_path), hostonly=True)
    assert {"nfsv3", "8021q", "bonding"} <= set(r.kernel_modules)
    assert not any("bond0" in w for w in r.warnings)
    env = _text(_entry(r, "/lib/kdump/network.sh"))
    assert "KDUMP_NET_IPARG=10.7.0.5::10.7.0.1:255.255.255.0::bond0.7:none" in env
    assert "KDUMP_NET_IFACE=bond0.7\n" in env and "KDUMP_NET_STACK=1\n" in env
    assert "kdump_net_step_bond bond0 52:54:00:00:00:01 active-backup || return 1" in env
    assert "kdump_net_step_vlan bond0.7 bond0 7 '' || return 1" in env
    nfs = _text(_entry(r, "/lib/kdump/target.sh"))
    assert "KDUMP_NFS_SOURCE=192.0.2.9:/dumps" in nfs and "KDUMP_NFS_OPTIONS=nfsvers=3,rw\n" in nfs
    assert _text(_entry(r, "/etc/resolv.conf")) == "nameserver 192.0.2.53\n"


def _small_net(root: Path) -> FakeNet:
    net = FakeNet(root)
    net.nic("eth0", "52:54:00:00:00:01", pci="0000:00:03.0")
    net.addr4("eth0", "10.0.2.15/24")
    net.route4("eth0", "0.0.0.0/0", "10.0.2.2")
    net.commit()
    return net


def test_the_network_plan_is_worked_out_once_and_the_nfs_probe_is_the_hosts(
        kernel: Kernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mkkdumprd.network import capture

    _small_net(tmp_path)
    plans: list[str] = []
    real_plan = capture.network_plan

    def counting(system: Host, host: str, **kw: object) -> object:
        plans.append(host)
        return real_plan(system, host, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(capture, "network_plan", counting)
    probed: list[tuple[str, int, float]] = []

    def refused(addr: str, port: int, timeout: float) -> str | None:
        probed.append((addr, port, timeout))
        return "Connection refused"

    cfg = KdumpConfig(target=Target(TargetKind.NFS, server="10.0.2.100:/export"))
    # A fake tree standing for the live machine: the live-only check runs, with its probe.
    r = _build(kernel, cfg, system=Host(tmp_path, live=True, probe_tcp=refused), hostonly=True)
    assert plans == ["10.0.2.100"]
    assert probed == [("10.0.2.100", 2049, 5.0)]
    assert any("does not answer on port 2049" in w and "Connection refused" in w
               for w in r.warnings)
    plans.clear()
    r = _build(kernel, cfg, system=Host(tmp_path, probe_tcp=refused), hostonly=True)
    assert plans == ["10.0.2.100"] and len(probed) == 1        # not live: no probe
    assert not any("does not answer" in w for w in r.warnings)


def test_the_ssh_login_check_runs_through_the_hosts_runner(kernel: Kernel,
                                                           tmp_path: Path) -> None:
    from collections.abc import Sequence

    from mkkdumprd.host import Ran

    net = _small_net(tmp_path)
    net.write("/root/key", "PRIVATE\n")
    net.write("/etc/ssh/ssh_known_hosts", "10.0.2.100 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7\n")
    ran: list[Sequence[str]] = []
    answer = Ran(255, "", "debug\nroot@10.0.2.100: Permission denied (publickey).\n")

    def run(argv: Sequence[str], timeout: float | None) -> Ran:
        ran.append(argv)
        return answer

    cfg = KdumpConfig(target=Target(TargetKind.SSH, server="root@10.0.2.100"),
                      sshkey="/root/key")
    machine = Host(tmp_path, live=True, run=run)
    with pytest.raises(OperationError, match=r"ssh to root@10\.0\.2\.100 with key /root/key "
                                             r"failed \(root@10.0.2.100: Permission denied"):
        _build(kernel, cfg, system=machine, hostonly=True)
    assert len(ran) == 1 and ran[0][0] == "ssh" and ran[0][-1] == "true"
    answer = Ran(0, "", "")
    r = _build(kernel, cfg, system=machine, hostonly=True)
    assert len(ran) == 2 and "ssh" in r.modules
