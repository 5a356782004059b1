"""The fence-kdump and emergency stages: rendered with hostile values, run in a real sh with
the rest of the image stubbed, shellcheck clean; the fence-kdump hooks' build-time checks."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from mkkdumprd.assemble.hooks import BuildContext, load_hooks
from mkkdumprd.assemble.moduledef import load_module
from mkkdumprd.assemble.target import ResolvedTarget
from mkkdumprd.assemble.templates import environment, render, taint
from mkkdumprd.config.model import KdumpConfig, TargetKind
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.resources import data_dir
from tests.support import shellcheck
from tests.support.fake_network import FakeNet

MODULES = data_dir("modules.d")
HOSTILE = "a b'c\"d$(touch PWNED)`touch PWNED2`;touch PWNED3 \\ $HOME *\nnext line"
LINTS = ("SC2016", "SC2288", "SC2289")
STUBS = """
kinfo() { echo "kdump: $*"; }
kwarn() { echo "kdump: warning: $*"; }
kerr() { echo "kdump: error: $*"; }
"""


def _render(module: str, template: str, ctx: dict[str, object], out: Path) -> Path:
    env = environment([MODULES / module, data_dir("templates")])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(env, template, {k: taint(v) for k, v in ctx.items()}))
    return out


def _sh(script: str, cwd: Path) -> str:
    r = subprocess.run(["sh", "-c", script], cwd=cwd, capture_output=True, text=True,
                       timeout=60, env={"PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _exe(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_emergency_hooks_order_time_limit_and_hostile_program(tmp_path: Path) -> None:
    hooks = tmp_path / "emergency.d"
    _exe(hooks / "01-hang", "echo HANG; exec sleep 30\n")
    _exe(hooks / "02-fail", "echo SECOND; exit 4\n")
    (hooks / "03-not-executable").write_text("#!/bin/sh\necho NEVER\n")
    program = _exe(tmp_path / f"bin/{HOSTILE.replace(chr(10), ' ')}", 'echo "PROGRAM $#"\n')
    from mkkdumprd.image import layout

    paths = {**layout.TEMPLATE_PATHS, "emergency_d": str(hooks)}
    script = _render("emergency", "emergency.sh.j2",
                     {"emergency": _Vars(program=str(program)), "paths": paths},
                     tmp_path / "root/lib/kdump/init.d/10-emergency.sh")
    shellcheck.assert_clean([script], tmp_path / "root", LINTS)
    out = _sh(f"{STUBS}KDUMP_HOOK_TIMEOUT=1\n. '{script}'\nkdump_emergency_hooks\n"
              "kdump_emergency_hooks\n", tmp_path)
    lines = out.splitlines()
    assert lines == [
        f"kdump: running {hooks}/01-hang", "HANG",
        f"kdump: error: {hooks}/01-hang did not finish within 1 s (kdump.hook_timeout) and "
        "was killed",
        f"kdump: warning: {hooks}/01-hang exited with status 137",
        f"kdump: running {hooks}/02-fail", "SECOND",
        f"kdump: warning: {hooks}/02-fail exited with status 4",
        f"kdump: running kdump_emergency {program}", "PROGRAM 0",
    ], out        # once only, in name order, the program last, with no arguments
    assert not list(tmp_path.glob("PWNED*"))


@dataclass(frozen=True)
class _Vars:
    program: str


@dataclass(frozen=True)
class _Fence:
    sender: str
    args: tuple[str, ...]
    nodes: tuple[str, ...]
    shown: str
    command: str


@pytest.mark.parametrize("net_up", [True, False])
def test_fence_stage_starts_the_sender_with_exact_words(tmp_path: Path, net_up: bool) -> None:
    from mkkdumprd.image import layout

    argv_file = tmp_path / "argv"
    sender = _exe(tmp_path / "sender", f'for a in "$@"; do printf "[%s]" "$a"; done '
                                       f'>"{argv_file}"\n')
    net = tmp_path / "network.sh"
    net.write_text("kdump_net_up() { return 0; }\n" if net_up else
                   "kdump_net_up() { KDUMP_REASON='no link'; return 1; }\n")
    fence = _Fence(sender=str(sender), args=("-p", "7410", "-i", HOSTILE),
                   nodes=("10.0.2.100", "-n"), shown=HOSTILE, command=HOSTILE)
    script = _render("fence-kdump", "fence-kdump.sh.j2",
                     {"fence_kdump": fence, "paths": {**layout.TEMPLATE_PATHS,
                                                      "network_sh": str(net)}},
                     tmp_path / "root/lib/kdump/init.d/80-fence-kdump.sh")
    shellcheck.assert_clean([script], tmp_path / "root", LINTS)
    out = _sh(f"{STUBS}. '{script}'\nwait\necho \"reason=[$KDUMP_REASON]\"\n", tmp_path)
    if net_up:
        assert argv_file.read_text() == "".join(f"[{w}]" for w in (*fence.args, *fence.nodes))
        assert f"kdump: fence_kdump: telling {HOSTILE}" in out
    else:
        assert not argv_file.exists()
        assert ("kdump: error: fence_kdump: the network did not come up (no link); the "
                "cluster peers are not told this node is dumping") in out
    assert "reason=[]" in out      # a network failure here is no dump failure
    assert not list(tmp_path.glob("PWNED*"))


def _ctx(sysroot: Path, machine: Host, nodes: tuple[str, ...]) -> BuildContext:
    return BuildContext(
        config=KdumpConfig(fence_kdump_nodes=nodes, source="/etc/kdump.conf"),
        target=ResolvedTarget(TargetKind.LOCAL, "/dev/vda1", "ext4", "/var/crash"),
        kver="6.1.0", arch="x86_64", sysroot=Host(sysroot), machine=machine, hostonly=True,
        module=load_module(MODULES / "fence-kdump"), active=(), applets=())


def test_a_missing_sender_is_a_build_error_naming_the_package(tmp_path: Path) -> None:
    hooks = load_hooks(load_module(MODULES / "fence-kdump"))
    assert hooks.entries is not None
    with pytest.raises(UsageError, match=r"needs fence_kdump_send.*`fence-agents` on bookworm"):
        hooks.entries(_ctx(tmp_path, Host(tmp_path), ("10.0.2.100",)))


def test_peers_are_resolved_and_this_machine_is_refused(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/libexec/fence-agents/fence_kdump_send", "")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hosts").write_text("10.0.2.101 node-b\n")
    net = FakeNet(tmp_path)
    net.addr4("eth0", "10.0.2.15/24")
    net.commit()
    hooks = load_hooks(load_module(MODULES / "fence-kdump"))
    assert hooks.template_vars is not None
    got = hooks.template_vars(_ctx(tmp_path, Host(tmp_path), ("10.0.2.100", "node-b")))
    assert got.sender == "/usr/libexec/fence-agents/fence_kdump_send"  # type: ignore[attr-defined]
    assert got.nodes == ("10.0.2.100", "10.0.2.101")  # type: ignore[attr-defined]
    with pytest.raises(OperationError, match="fence_kdump node nobody: cannot resolve"):
        hooks.template_vars(_ctx(tmp_path, Host(tmp_path, live=False), ("nobody",)))
    with pytest.raises(UsageError, match=r"node 10.0.2.15 \(10.0.2.15\) is this machine"):
        hooks.template_vars(_ctx(tmp_path, Host(tmp_path), ("10.0.2.15",)))


def test_own_host_name_is_refused_and_another_interface_warned(tmp_path: Path) -> None:
    import ipaddress
    from dataclasses import replace

    from mkkdumprd.network.ipconfig import IpConfig, IpMode
    from mkkdumprd.network.plan import NetworkPlan
    from mkkdumprd.network.resolve import ResolvedHost

    _exe(tmp_path / "usr/libexec/fence-agents/fence_kdump_send", "")
    net = FakeNet(tmp_path)
    net.addr4("eth0", "10.0.2.15/24")
    net.addr4("eth1", "192.168.5.2/24")
    net.commit()
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/hostname").write_text("node-a\n")
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc/hosts").write_text("10.0.2.16 node-a\n")
    hooks = load_hooks(load_module(MODULES / "fence-kdump"))
    assert hooks.template_vars is not None and hooks.check is not None
    with pytest.raises(UsageError, match=r"node Node-A is this machine's host name"):
        hooks.template_vars(_ctx(tmp_path, Host(tmp_path), ("Node-A",)))
    plan = NetworkPlan(ResolvedHost("10.0.2.100", ipaddress.ip_address("10.0.2.100")),
                       IpConfig(IpMode.STATIC, iface="eth0"), None)
    ctx = replace(_ctx(tmp_path, Host(tmp_path), ("10.0.2.100", "192.168.5.9")), network=plan)
    assert hooks.check(ctx) == [
        "fence_kdump node 192.168.5.9 is reached through eth1, but the capture image brings "
        "up only eth0; its messages may not arrive"]
