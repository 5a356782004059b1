"""What the network/nfs/ssh modules give the capture scripts (settings), links, host keys.

How the settings reach the scripts (quoted, whatever they hold) is test_build_templates.py's
test_every_template_with_hostile_values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.network import capture, plan, ssh_command
from mkkdumprd.network.ipconfig import parse_ip
from mkkdumprd.network.nfs_options import NfsExport, NfsMount
from mkkdumprd.network.resolve import ResolvedHost
from tests.support.fake_network import FakeNet


@pytest.fixture
def bonded(tmp_path: Path) -> Host:
    net = FakeNet(tmp_path)
    net.nic("eth0", "52:54:00:00:00:01", pci="0000:00:03.0")
    net.nic("eth1", "52:54:00:00:00:02", pci="0000:00:04.0")
    net.bond("bond0", "52:54:00:00:00:01", ["eth0", "eth1"],
             perm={"eth1": "52:54:00:00:00:02"})
    net.vlan("bond0.7", "52:54:00:00:00:01", "bond0", 7)
    net.addr4("bond0.7", "10.7.0.5/24")
    net.route4("bond0.7", "0.0.0.0/0", "10.7.0.1")
    net.commit()
    return Host(tmp_path)


def test_network_env_for_vlan_on_bond(bonded: Host) -> None:
    p = plan.discover(bonded, "192.0.2.9")
    env, warnings = capture.network_settings(p)
    assert env.iparg == "10.7.0.5::10.7.0.1:255.255.255.0::bond0.7:none"
    assert (env.mode, env.addr, env.gw) == ("static", "10.7.0.5/24", "10.7.0.1")
    # the NICs by their own MACs, the stack rebuilt with the host's names, configured on top
    assert env.macs == "52:54:00:00:00:01 52:54:00:00:00:02"
    assert env.iface == "bond0.7"
    assert [(s.op, *s.args) for s in env.steps] == [
        ("nic", "52:54:00:00:00:01", "eth0"),
        ("nic", "52:54:00:00:00:02", "eth1"),
        ("bond", "bond0", "52:54:00:00:00:01", "active-backup"),
        ("bond_opt", "bond0", "miimon", "100"),
        ("bond_port", "bond0", "eth0"),
        ("bond_port", "bond0", "eth1"),
        ("up", "bond0"),
        ("vlan", "bond0.7", "bond0", "7", ""),
        ("up", "bond0.7"),
    ]
    assert warnings == []
    assert capture.nic_modules(bonded, p)[-2:] == ["bonding", "8021q"]


def test_plans_for_other_machines(tmp_path: Path) -> None:
    v = Host(tmp_path)
    p = capture.network_plan(v, "10.0.2.100", hostonly=False)
    assert capture.network_settings(p)[0].mode == "dhcp"
    p = capture.network_plan(v, "10.0.2.100", hostonly=False,
                             user_ip="10.0.2.15::10.0.2.2:255.255.255.0::eth0:none")
    env = capture.network_settings(p)[0]
    assert (env.iface, env.addr, env.macs) == ("eth0", "10.0.2.15/24", "")
    with pytest.raises(OperationError, match="IPv6 address but the dump target"):
        capture.network_plan(v, "10.0.2.100", hostonly=False,
                             user_ip="[fd00::2]::[fd00::1]:64::eth0:none")
    six = capture.network_plan(v, "fd00::9", hostonly=False)
    assert capture.network_settings(six)[0].mode == "auto6"
    with pytest.raises(UsageError, match="DHCPv6"):
        capture.network_settings(plan.NetworkPlan(six.target, parse_ip("eth0:dhcp6"), None))


def test_resolv_conf_only_for_names(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").write_text("nameserver 127.0.0.53\nsearch lan\n")
    (tmp_path / "run/systemd/resolve").mkdir(parents=True)
    (tmp_path / "run/systemd/resolve/resolv.conf").write_text(
        "# upstream\nnameserver 192.0.2.53\nsearch lan\n")
    v = Host(tmp_path)
    a = ipaddress.ip_address("192.0.2.1")
    by_addr = plan.NetworkPlan(ResolvedHost("192.0.2.1", a), parse_ip("dhcp"), None)
    assert capture.resolv_conf(v, by_addr) is None
    by_name = plan.NetworkPlan(ResolvedHost("nas.lan", a), parse_ip("dhcp"), None)
    assert capture.resolv_conf(v, by_name) == "nameserver 192.0.2.53\nsearch lan\n"
    (tmp_path / "etc/resolv.conf").write_text("# empty\n")
    with pytest.raises(OperationError, match="no nameserver"):
        capture.resolv_conf(v, by_name)


def test_nfs_settings_use_build_time_address() -> None:
    a = ipaddress.ip_address("fd00::9")
    p = plan.NetworkPlan(ResolvedHost("nas.lan", a), parse_ip("auto6"), None)
    m = NfsMount(NfsExport("nas.lan", "/srv/x y"), "nfs4", ("rw", "vers=4.2"), "mountinfo")
    assert asdict(capture.nfs_settings(m, p)) == {
        "source": "[fd00::9]:/srv/x y", "server": "nas.lan:/srv/x y",
        "fstype": "nfs4", "options": "rw,vers=4.2", "versions": ""}
    unpinned = NfsMount(NfsExport("h", "/x"), "nfs4", ("defaults",), "defaults")
    assert capture.nfs_versions(unpinned) == ("4.2", "4.1", "4.0")
    v3 = NfsMount(NfsExport("h", "/x"), "nfs", ("defaults",), "defaults")
    assert capture.nfs_versions(v3) == ()


def _hashed(host: str, salt: bytes) -> str:
    mac = hmac.new(salt, host.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()}"


def test_known_host_keys_plain_hashed_ported_revoked() -> None:
    text = "\n".join([
        "# comment",
        "other.lan,10.0.0.1 ssh-ed25519 AAAAother",
        f"{_hashed('dump.lan', b'0123456789abcdef0123')} ssh-ed25519 AAAAhashed",
        "dump.lan,192.0.2.9 ecdsa-sha2-nistp256 AAAAecdsa c",
        "[dump.lan]:2222 ssh-rsa AAAAport",
        "@revoked dump.lan ssh-rsa AAAAbad",
        "dump.lan ssh-rsa AAAAbad",
        "@cert-authority *.lan ssh-ed25519 AAAAca",
    ])
    assert capture.known_host_keys(text, "dump.lan", 22) == [
        "ssh-ed25519 AAAAhashed", "ecdsa-sha2-nistp256 AAAAecdsa"]
    assert capture.known_host_keys(text, "dump.lan", 2222) == ["ssh-rsa AAAAport"]
    assert capture.known_host_keys(text, "nowhere", 22) == []


def test_real_ssh_keygen_hashed_file_is_understood(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("dump.lan ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7\n"
                  "[10.0.2.100]:2200 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK8\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(kh)], check=True, capture_output=True)
    text = kh.read_text()
    assert "dump.lan" not in text
    assert capture.known_host_keys(text, "dump.lan", 22) == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7"]
    assert capture.known_host_keys(text, "10.0.2.100", 2200) == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK8"]


def test_host_key_lines_error_names_the_fix(tmp_path: Path) -> None:
    t = ssh_command.parse_target("root@10.0.2.100")
    with pytest.raises(OperationError, match="mkkdumprd propagate"):
        capture.host_key_lines(Host(tmp_path), t)
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_known_hosts").write_text("10.0.2.100 ssh-ed25519 AAAAsys\n")
    assert capture.host_key_lines(Host(tmp_path), t) == ["10.0.2.100 ssh-ed25519 AAAAsys"]


def test_ssh_settings_from_the_one_argv_builder(tmp_path: Path) -> None:
    path = str(tmp_path / "it's $(touch PWNED) dir")
    t = ssh_command.parse_target("root@fd00::9", port=2222)
    s = capture.ssh_settings(t, path)
    assert list(s.argv) == ssh_command.ssh_argv(t, "/root/.ssh/kdump_id",
                                                "/root/.ssh/known_hosts")
    assert (s.destination, s.path) == ("root@fd00::9", path)
    # the script appends <ip>-<date> to the remote-quoted prefix; the remote shell parses it
    remote = f"mkdir -p -- {s.remote_prefix}10.0.2.15-2026-01-01-00:00:00"
    subprocess.run(["sh", "-c", remote], check=True, cwd=tmp_path)
    assert (Path(path) / "10.0.2.15-2026-01-01-00:00:00").is_dir()
    assert not (tmp_path / "PWNED").exists()
