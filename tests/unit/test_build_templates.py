"""The generated /init and dump scripts: quoting enforced, syntax valid, shellcheck clean,
and the dump flow run for real (busybox sh and the system sh) against fake tools in a temp
directory.

Hostile values (spaces, quotes, $(...), backticks, ;, newlines, globs, leading dashes) in
every value of the template context, the settings of the network, nfs and ssh modules and
the paths in the image included, must reach the tools as the exact same bytes and run
nothing. Scripts are rendered with every image path moved under a test root
(`_paths`), so they run here and source each other as in the image.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest

from mkkdumprd.assemble.builder import template_context
from mkkdumprd.assemble.target import ResolvedTarget
from mkkdumprd.assemble.templates import (
    Tainted,
    TemplateRenderError,
    environment,
    render,
    shargs,
    shq,
    taint,
)
from mkkdumprd.config.model import Action, KdumpConfig, Target, TargetKind
from mkkdumprd.image import layout
from mkkdumprd.network.capture import NetworkSettings, NfsSettings, SshSettings
from mkkdumprd.network.netconsole import NetconsoleSettings
from mkkdumprd.network.ssh_command import DumpCommands, dump_commands, remote_dir_prefix
from mkkdumprd.network.stack import OPS, Step
from mkkdumprd.records.outcome import (
    OUTCOME_FILE,
    PREFIX,
    OutcomeSettings,
    TargetAttempt,
    parse_outcome,
)
from mkkdumprd.resources import data_dir
from mkkdumprd.storage.capture import (
    LogicalVolume,
    LuksVolume,
    MdArray,
    MultipathMap,
    StorageSettings,
)
from mkkdumprd.storage.iscsi import IscsiLogin, IscsiSettings
from mkkdumprd.watchdog import WatchdogSettings
from tests.support import shellcheck

TEMPLATES = data_dir("templates")
SHELLS = [s for s in ("/bin/sh", "/bin/busybox") if Path(s).exists()]
HOSTILE = "a b'c\"d$(touch PWNED)`touch PWNED2`;touch PWNED3 \\ $HOME *\nnext line"
DATE = "2026-01-02-03:04:05"


def _env() -> jinja2.Environment:
    return environment([TEMPLATES])


# ---- the filters and the taint rule ---------------------------------------------------

def test_shq_quotes_every_hostile_value_into_one_word() -> None:
    for value in (HOSTILE, "", "-n", "'", "\n", "$((1+1))"):
        out = subprocess.run(["sh", "-c", f"printf '%s' {shq(value)}"], capture_output=True,
                             check=True).stdout.decode()
        assert out == value


def test_shargs_keeps_word_boundaries() -> None:
    words = ["makedumpfile", "-d", "31", HOSTILE, ""]
    out = subprocess.run(["sh", "-c", f"for a in {shargs(words)}; do printf '[%s]' \"$a\"; done"],
                         capture_output=True, check=True).stdout.decode()
    assert out == "".join(f"[{w}]" for w in words)
    with pytest.raises(TemplateRenderError, match="list of words"):
        shargs("not a list")  # type: ignore[arg-type]


def test_unquoted_config_value_is_a_render_error() -> None:
    env = environment([])
    env.loader = jinja2.DictLoader({"bad": "echo {{ path }}\n", "good": "echo {{ path | shq }}\n",
                                    "list": "{{ argv }}\n"})
    ctx = {"path": Tainted("/x; rm -rf /"), "argv": taint(["a", "b"])}
    with pytest.raises(TemplateRenderError, match=re.escape("without `| shq`")):
        render(env, "bad", ctx)
    with pytest.raises(TemplateRenderError, match="shargs"):
        render(env, "list", ctx)
    assert render(env, "good", ctx) == "echo '/x; rm -rf /'\n"


def test_undefined_variable_is_a_render_error() -> None:
    env = environment([])
    env.loader = jinja2.DictLoader({"t": "{{ nothing | shq }}\n"})
    with pytest.raises(TemplateRenderError, match="nothing") as exc:
        render(env, "t", {})
    assert exc.value.exit_code == 4  # a shipped template's fault, not the user's


def test_render_error_names_the_template_file(tmp_path: Path) -> None:
    (tmp_path / "t.sh.j2").write_text("echo {{ path }}\n")
    with pytest.raises(TemplateRenderError,
                       match=re.escape(f"template {tmp_path / 't.sh.j2'}: ")):
        render(environment([tmp_path]), "t.sh.j2", {"path": Tainted("/x")})


def test_every_context_string_is_tainted() -> None:
    ctx = _context(_config(), _local_target())
    seen = []

    def walk(v: object) -> None:
        if isinstance(v, str):
            seen.append(v)
            assert isinstance(v, Tainted), v
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(ctx)
    assert len(seen) > 15


# ---- rendering helpers ----------------------------------------------------------------

def _config(**kw: object) -> KdumpConfig:
    base: dict[str, object] = {"target": Target(TargetKind.LOCAL, device="UUID=x", fstype="ext4")}
    base.update(kw)
    return KdumpConfig(**base)  # type: ignore[arg-type]


def _local_target(device: str = "UUID=1234", path: str = "/var/crash",
                  fstype: str | None = "ext4") -> ResolvedTarget:
    return ResolvedTarget(TargetKind.LOCAL, device, fstype, path)


NETWORK = NetworkSettings(iparg="dhcp", mode="dhcp", iface="", macs="52:54:00:12:34:56",
                          family="4", addr="", gw="", mtu="", target="10.0.2.100")
WATCHDOG = WatchdogSettings(identities=("i6300ESB timer", "it's a $(watchdog)"))
NFS = NfsSettings(source="10.0.2.100:/export", server="nas:/export", fstype="nfs4",
                  options="defaults", versions="4.2 4.1 4.0")
OUTCOME = OutcomeSettings(file=OUTCOME_FILE, prefix=PREFIX, ramoops_ko="")
NETCONSOLE = NetconsoleSettings(host="192.0.2.1", port="6666")
SSH = SshSettings(argv=("ssh", "-p", "22", "root@10.0.2.100"), destination="root@10.0.2.100",
                  path="/var/crash", remote_prefix="/var/crash/", commands=dump_commands())



@dataclass(frozen=True)
class _Emergency:                   # modules.d/emergency's template_vars
    program: str


@dataclass(frozen=True)
class _Fence:                       # modules.d/fence-kdump's template_vars
    sender: str
    args: tuple[str, ...]
    nodes: tuple[str, ...]
    shown: str
    command: str


EMERGENCY = _Emergency(program="/usr/local/bin/on-error")
FENCE = _Fence(sender="/usr/libexec/fence-agents/fence_kdump_send", args=("-p", "7410"),
               nodes=("10.0.2.100",), shown="node-b", command="-p 7410 10.0.2.100")


def _paths(root: Path | None = None, **override: str) -> dict[str, str]:
    """The image's paths (image/layout.py), under `root` when given; the console stays the
    terminal it is (tests that run /init's stages replace it with /dev/null)."""
    prefix = "" if root is None else str(root)
    if root is not None:        # the image has its /tmp; the scripts keep their files there
        Path(prefix + layout.TMP_DIR).mkdir(parents=True, exist_ok=True)
    return {**{k: prefix + v for k, v in layout.TEMPLATE_PATHS.items()},
            "console": layout.CONSOLE, **override}


def _context(config: KdumpConfig, target: ResolvedTarget, *, dmesg: bool = True,
             paths: Mapping[str, str] | None = None, **override: object) -> dict[str, object]:
    p = dict(paths or _paths())
    ctx = template_context(config, target, kver="6.1.0-test", arch="x86_64",
                           found_binaries=["makedumpfile", *(["vmcore-dmesg"] if dmesg else [])],
                           init_scripts=[p["modules_sh"], p["outcome_sh"], p["kdump_sh"]],
                           modules=["base", "kdump"], kernel_modules=["virtio_blk"],
                           timeout=3,
                           module_vars={"network": NETWORK, "nfs": NFS, "ssh": SSH,
                                        "emergency": EMERGENCY, "fence_kdump": FENCE,
                                        "watchdog": WATCHDOG,
                                        "storage": StorageSettings(describe=""),
                                        "iscsi": IscsiSettings("", ()),
                                        "outcome": OUTCOME,
                                        "netconsole": NETCONSOLE})
    # the one target's script where the test put the image's paths
    targets = [{"script": p["target_sh"], "desc": target.describe(), "number": "1",
                "network": ""}]
    ctx.update({k: taint(v) for k, v in {"paths": p, "targets": targets, **override}.items()})
    return ctx


# Every template but the dump targets', by the path it is rendered to.
SCRIPTS = {
    "init.sh.j2": "init",
    "lib.sh.j2": "lib_sh",
    "memstat.sh.j2": "memstat_sh",
    "modules.sh.j2": "modules_sh",
    "kdump.sh.j2": "kdump_sh",
    "attempt.sh.j2": "attempt_sh",
    "collector.sh.j2": "collector_sh",
    "rootfs.sh.j2": "rootfs_sh",
    "net-lib.sh.j2": "network_sh",
    "net-udhcpc.sh.j2": "udhcpc_sh",
    "emergency.sh.j2": "emergency_sh",
    "fence-kdump.sh.j2": "fence_kdump_sh",
    "watchdog.sh.j2": "watchdog_sh",
    "storage.sh.j2": "storage_sh",
    "iscsi.sh.j2": "iscsi_sh",
    "outcome.sh.j2": "outcome_sh",
    "netconsole.sh.j2": "netconsole_sh",
}
TARGETS = {"local": "target-local.sh.j2", "raw": "target-raw.sh.j2",
           "nfs": "target-nfs.sh.j2", "ssh": "target-ssh.sh.j2"}


# shellcheck's guesses that a literal is a typo: a hostile value is such a literal on
# purpose, single-quoted. SC2016: `$(...)` inside single quotes; SC2288/SC2289: a command
# name (kdump_pre, the collector) ending in a quote or holding a newline.
HOSTILE_LINTS = ("SC2016", "SC2288", "SC2289")


def _holds_hostile(value: object) -> bool:
    if isinstance(value, str):
        return any(c in value for c in ("$(", "`", "'", '"', "\n"))
    if isinstance(value, (list, tuple)):
        return any(_holds_hostile(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_hostile(v) for v in value.values())
    return False


def _render_all(ctx: Mapping[str, object], root: Path, target_template: str) -> list[Path]:
    """Every script of an image at its path under `root` (the paths in ctx are below it);
    shellcheck must pass over all of them (but for HOSTILE_LINTS where a value is hostile)."""
    env = _env()
    paths = ctx["paths"]
    assert isinstance(paths, dict)
    out = []
    for src, name in {**SCRIPTS, target_template: "target_sh"}.items():
        f = Path(paths[name])
        assert f.is_relative_to(root), f"{name} is not under the test root"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(render(env, src, ctx))
        out.append(f)
    shellcheck.assert_clean(out, root, HOSTILE_LINTS if _holds_hostile(dict(ctx)) else ())
    return out


# ---- every template with hostile values -----------------------------------------------

HOSTILE_VALUES = {
    # leading dashes, then quotes, $(...), backticks, ;, \\, $HOME, globs, a newline
    "everything": "-n -e --version " + HOSTILE + " ? [a-z]* ~root /*",
    "quotes": "'\"''\"\"'",
    "newlines": "\n\nfirst\n\n",
}
NET_VARS = ("IPARG", "MODE", "IFACE", "MACS", "FAMILY", "ADDR", "GW", "MTU", "TARGET")


def _hostile_context(value: str, root: Path, fake_ssh: Path) -> dict[str, object]:
    """Every string of the template context is `value`, every image path is below `root`."""
    config = _config(kdump_pre=value, kdump_post=value,
                     core_collector=("makedumpfile", "-d", "31", value))
    target = ResolvedTarget(TargetKind.LOCAL, value, value, value, value, mount_options=value)
    # every step of a rebuilt bond/bridge/VLAN stack, each argument the hostile value
    steps = tuple(Step(op, (value,) * n) for op, n in OPS.items())
    network = NetworkSettings(**{**dict.fromkeys(NetworkSettings.__dataclass_fields__, value),
                                 "steps": steps})
    nfs = NfsSettings(**dict.fromkeys(NfsSettings.__dataclass_fields__, value))
    outcome = OutcomeSettings(**dict.fromkeys(OutcomeSettings.__dataclass_fields__, value))
    netconsole = NetconsoleSettings(**dict.fromkeys(NetconsoleSettings.__dataclass_fields__,
                                                    value))
    ssh = SshSettings(argv=(str(fake_ssh), value, "-o", value, "--", value),
                      destination=value, path=value, remote_prefix=value,
                      commands=DumpCommands(**dict.fromkeys(DumpCommands.__dataclass_fields__,
                                                            value)))
    storage = StorageSettings(
        describe=value, md=(MdArray(value, value, (value, value)),),
        lvm=(LogicalVolume(value, value, value),), crypt=(LuksVolume(value, value, value),),
        multipath=(MultipathMap(value, value, value, (value, value)),),
        md_all=value, lvm_all=value, crypt_all=value, multipath_all=value)
    iscsi = IscsiSettings(value, (IscsiLogin(
        **dict.fromkeys(IscsiLogin.__dataclass_fields__, value)),))
    return _context(config, target, paths=_paths(root), storage=storage, iscsi=iscsi,
                    modules=["base", "kdump", "storage", "lvm", "mdraid", "crypt", "btrfs",
                             "multipath", "iscsi"],
                    version=value, kver=value, arch=value, timeout=value,
                    failure_action=value, final_action=value,
                    rootfs={"device": value, "fstype": value, "path": value,
                            "mount_options": value},
                    network=network, nfs=nfs, ssh=ssh,
                    watchdog=WatchdogSettings((value, value)),
                    outcome=outcome, netconsole=netconsole)


def _expected(kind: str, value: str, p: Mapping[str, str]) -> dict[str, str]:
    """The variables the sourced scripts set, and to what."""
    out = {
        "KDUMP_VERSION": value, "KDUMP_KVER": value, "KDUMP_TIMEOUT": value,
        "KDUMP_FAILURE_ACTION": value, "KDUMP_FINAL_ACTION": value,
        "KDUMP_SYSRQ": p["sysrq_trigger"], "KDUMP_VMCORE": p["vmcore"],
        "KDUMP_ROOT_DEV": value, "KDUMP_ROOT_FSTYPE": value, "KDUMP_ROOT_PATH": value,
        "KDUMP_ROOT_OPTS": value,
        "KDUMP_SYSROOT": p["sysroot"],
    }
    if kind in ("local", "raw"):
        out["KDUMP_TARGET"] = value
    if kind == "local":
        out |= {"KDUMP_FSTYPE": value, "KDUMP_PATH": value, "KDUMP_MNT": p["mount_point"],
                "KDUMP_MNT_OPTS": value, "KDUMP_STORAGE_DESC": value,
                "KDUMP_STORAGE_LOG": p["storage_log"], "KDUMP_ISCSI_INITIATOR": value,
                "KDUMP_ISCSI_TARGETS": value, "KDUMP_ISCSI_PORTALS": value}
    if kind in ("nfs", "ssh"):
        out |= {f"KDUMP_NET_{n}": value for n in NET_VARS}
        out["KDUMP_NET_SYS"] = p["sys_net"]
    if kind == "nfs":
        out |= {f"KDUMP_NFS_{n}": value for n in ("SOURCE", "SERVER", "FSTYPE", "OPTIONS",
                                                  "VERSIONS")}
        out |= {"KDUMP_PATH": value, "KDUMP_MNT": p["mount_point"]}
    if kind == "ssh":
        out |= {f"KDUMP_SSH_{n}": value for n in ("DEST", "PATH", "RPATH", "MKDIR", "SEND_DMESG",
                                                 "KEEP_DMESG", "SEND_VMCORE", "KEEP_VMCORE")}
    return out


@pytest.mark.parametrize("name", sorted(HOSTILE_VALUES))
def test_every_template_with_hostile_values(tmp_path: Path, name: str) -> None:
    """Each of templates/*.j2 rendered with one hostile value in every context string and
    every image path: `sh -n` and shellcheck pass, and sourcing the scripts in a real shell
    sets each variable to the value's exact bytes, with nothing executed."""
    value = HOSTILE_VALUES[name]
    assert {p.name for p in TEMPLATES.glob("*.j2")} == {*SCRIPTS, *TARGETS.values()}
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_ssh = bindir / "ssh"
    fake_ssh.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done >"$SSH_LOG"\n')
    fake_ssh.chmod(0o755)
    # The root itself is hostile too: every path in the image is printed with shq. One root
    # for the four targets: the scripts they share are rendered the same and checked once.
    root = tmp_path / f"root {value.replace('/', '_')}"
    for kind, template in TARGETS.items():
        ctx = _hostile_context(value, root, fake_ssh)
        files = _render_all(ctx, root, template)
        for f in files:
            for shell in SHELLS:
                argv = [shell, "sh", "-n", str(f)] if shell.endswith("busybox") else \
                    [shell, "-n", str(f)]
                r = subprocess.run(argv, capture_output=True, text=True)
                assert r.returncode == 0, f"{shell}: {f.name}: {r.stderr}"
        p = _paths(root)
        want = _expected(kind, value, p)
        driver = "".join(f". {shq(p[n])}\n" for n in ("lib_sh", "collector_sh", "rootfs_sh",
                                                       "target_sh", "watchdog_sh"))
        driver += "".join(f'printf "%s\\0" "${v}"\n' for v in want)
        if kind == "ssh":
            driver += f"kdump_ssh {shq(value)}\n"
        log = tmp_path / "ssh.log"
        for shell in SHELLS:
            argv = [shell, "sh"] if shell.endswith("busybox") else [shell]
            r = subprocess.run([*argv, "-c", driver], capture_output=True, cwd=tmp_path,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                    "SSH_LOG": str(log)})
            assert r.returncode == 0, r.stderr.decode()
            got = r.stdout.decode().split("\0")[:-1]
            assert dict(zip(want, got, strict=True)) == want, f"{kind} under {shell}"
            if kind == "ssh":
                # the argv words from network/ssh_command.py, then the remote command, after
                # the assignments of the dump directory and the byte count (empty: nothing
                # has run)
                logged = log.read_bytes().decode().split("\0")[:-1]
                assert logged == [value, "-o", value, "--", value, f"d= && n= && {value}"]
    assert not list(tmp_path.rglob("PWNED*")), "a hostile value was executed"


# ---- running the dump flow against fakes ----------------------------------------------

FAKES = {
    # Every fake logs its argv as [arg][arg]... so word boundaries are visible.
    "dmesg": 'echo "fake capture kernel log"',
    "findfs": 'log findfs "$@"; [ -n "$FAKE_DEV" ] && echo "$FAKE_DEV"',
    "mount": 'log mount "$@"; exit "${FAKE_MOUNT_RC:-0}"',
    "umount": 'log umount "$@"',
    # `sync FILE` fsyncs FILE: FAKE_SYNC_RC fails it for a file whose name has "incomplete"
    "sync": '[ $# -gt 0 ] || exit 0; log sync "$@"\n'
            'case " $* " in *incomplete*) exit "${FAKE_SYNC_RC:-0}" ;; esac',
    "sleep": ":",
    "date": f"echo {DATE}",
    "vmcore-dmesg": 'log vmcore-dmesg "$@"; echo "fake dmesg: sysrq triggered crash"',
    "makedumpfile": """log makedumpfile "$@"
for a in "$@"; do last=$a; done
case " $* " in
*" --dump-dmesg "*) echo "dmesg via makedumpfile" >"$last" ;;
*" -F "*) printf 'makedumpfile\\0\\0\\0\\0FLATDATA' ;;
*) [ "${FAKE_COLLECTOR_RC:-0}" = 0 ] || exit "$FAKE_COLLECTOR_RC"; echo VMCORE >"$last" ;;
esac""",
    "dd": 'log dd "$@"; for a in "$@"; do case $a in of=*) cat >"${a#of=}";; esac; done',
    "insmod": 'log insmod "$@"; case $1 in *bad.ko) echo "unknown symbol" >&2; exit 1;; esac',
    "uname": "echo 6.1.0-test",
    "ip": 'log ip "$@"',
}

DRIVER = """\
reboot() { echo "ACTION reboot $*" >>"$LOG"; exit 0; }
poweroff() { echo "ACTION poweroff $*" >>"$LOG"; exit 0; }
halt() { echo "ACTION halt $*" >>"$LOG"; exit 0; }
sh() { echo "ACTION shell $*" >>"$LOG"; }
. "$LIB_SH"
. "$OUTCOME_SH"
. "$KDUMP_SH"
echo "DRIVER: kdump_main returned" >>"$LOG"
"""


@dataclass
class Run:
    out: str
    log: str
    mnt: Path
    root: Path


@pytest.fixture
def blockdev(tmp_path: Path) -> Path:
    """A block device node that no driver owns (major 240, local/experimental use): only
    `[ -b ]` looks at it; the fakes never open it."""
    node = tmp_path / "dev" / "fakedisk"
    node.parent.mkdir()
    try:
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(240, 7))
    except PermissionError:
        pytest.skip("creating a block device node needs root")
    return node


def _fake_wrappers(bindir: Path, names: Iterable[str]) -> str:
    """Shell functions that reach the fakes in `bindir`.

    Debian's busybox-static runs its own applets before anything on PATH (SH_STANDALONE);
    ash looks functions up first, so these keep the fakes in charge under busybox too.
    """
    return "".join(f'{n}() {{ "{bindir}/{n}" "$@"; }}\n' for n in names if n.isidentifier())


def _run_flow(tmp_path: Path, shell: str, config: KdumpConfig, target: ResolvedTarget,
              target_template: str = "target-local.sh.j2", env: Mapping[str, str] = (),
              paths: Mapping[str, str] = (), premade: bool = False,
              **override: object) -> Run:
    """`premade`: the test has laid out the mount point's contents already."""
    root = tmp_path / "run"
    p = _paths(root, console="/dev/null", **dict(paths))
    bindir, mnt = root / "bin", Path(p["mount_point"])
    for d in (bindir, mnt):
        d.mkdir(parents=True, exist_ok=premade)
    vmcore = Path(p["vmcore"])
    vmcore.parent.mkdir(parents=True, exist_ok=premade)
    vmcore.write_text("core")
    Path(p["kmsg"]).parent.mkdir(parents=True, exist_ok=True)   # the outcome record's
    sysrq = Path(p["sysrq_trigger"])
    log = root / "log"
    ctx = _context(config, target, paths=p, **override)
    _render_all(ctx, root, target_template)
    for name, body in FAKES.items():
        f = bindir / name
        # One write per line: the two sides of a pipeline log at the same time.
        f.write_text('#!/bin/sh\nlog() { _l="$1:"; shift; for a in "$@"; do _l="$_l[$a]"; '
                     'done; printf "%s\\n" "$_l" >>"$LOG"; }\n' + body + "\n")
        f.chmod(0o755)
    (root / "driver.sh").write_text(_fake_wrappers(bindir, FAKES) + DRIVER)
    argv = [shell, "sh"] if shell.endswith("busybox") else [shell]
    full_env = {"PATH": f"{bindir}:/usr/bin:/bin", "LOG": str(log), "LIB_SH": p["lib_sh"],
                "KDUMP_SH": p["kdump_sh"], "OUTCOME_SH": p["outcome_sh"], "HOME": str(root),
                **dict(env)}
    r = subprocess.run([*argv, str(root / "driver.sh")], cwd=root, env=full_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not sysrq.exists(), "the fallback wrote the sysrq trigger although the action ran"
    assert not list(tmp_path.rglob("PWNED*")), "a configuration value was executed"
    return Run(r.stdout + r.stderr, log.read_text() if log.exists() else "", mnt, root)


def _hook(tmp_path: Path, name: str, body: str) -> str:
    d = tmp_path / f"hook dir {HOSTILE.splitlines()[0]}"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


@pytest.mark.parametrize("shell", SHELLS)
def test_local_dump_with_hostile_values(tmp_path: Path, shell: str, blockdev: Path) -> None:
    pre = _hook(tmp_path, "pre", 'echo "PRE ran" >>"$LOG"')
    post = _hook(tmp_path, "post", 'echo "POST ran with [$1]" >>"$LOG"')
    collector = ("makedumpfile", "-l", "--message-level", "7", "-d", "31", "-F", HOSTILE)
    config = _config(kdump_pre=pre, kdump_post=post, core_collector=collector,
                     final_action=Action.POWEROFF)
    path = "/" + HOSTILE
    run = _run_flow(tmp_path, shell, config, _local_target(device="UUID=" + HOSTILE, path=path),
                    env={"FAKE_DEV": str(blockdev)})

    dump = run.mnt / path.lstrip("/") / f"127.0.0.1-{DATE}"
    assert (dump / "vmcore").read_text() == "VMCORE\n"
    assert (dump / "vmcore-dmesg.txt").read_text() == "fake dmesg: sysrq triggered crash\n"
    assert not (dump / "vmcore-incomplete").exists()
    assert stat.S_IMODE((dump / "vmcore-dmesg.txt").stat().st_mode) == 0o600
    # The exact words reached the tools: -F dropped for a file target, hostile arg intact.
    assert f"findfs:[UUID={HOSTILE}]" in run.log
    assert (f"makedumpfile:[-l][--message-level][7][-d][31][{HOSTILE}][{run.root}/proc/vmcore]"
            f"[{dump}/vmcore-incomplete]") in run.log
    assert f"mount:[-t][ext4][-o][rw][{blockdev}][{run.mnt}]" in run.log
    lines = run.log.splitlines()
    assert lines.index("PRE ran") < next(i for i, x in enumerate(lines)
                                         if x.startswith("vmcore-dmesg:"))
    assert "POST ran with [0]" in run.log
    assert lines[-1] == "ACTION poweroff -f"
    assert "kdump: dump saved to " in run.out
    assert "kdump: final action: powering off" in run.out
    assert "failure action" not in run.out
    assert f"umount:[{run.mnt}]" in run.log
    # The outcome record, in the dump directory and in the kernel log, with the exact bytes
    # of the hostile target and path (on one line).
    desc = f"ext4 UUID={HOSTILE}:{path}".replace("\n", " ")     # the target's describe()
    for text in ((dump / OUTCOME_FILE).read_text(),
                 Path(_paths(run.root)["kmsg"]).read_text()):
        rec = parse_outcome(text)
        assert rec is not None and rec.complete
        assert (rec.result, rec.reason) == ("saved", "")
        assert rec.targets == (TargetAttempt(desc, "saved", f"{path}/127.0.0.1-{DATE}/vmcore "
                                             f"on UUID={HOSTILE}".replace("\n", " ")),)
    # the flow's last word is in the final record (the one in the directory is written by
    # the attempt, before it)
    assert any("dump saved to" in line for line in rec.console)
    log = (dump / "kexec-dmesg.log").read_text()
    assert log.startswith("kdump: ") and log.endswith(
        "--- the capture kernel's dmesg ---\nfake capture kernel log\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_missing_target_times_out_into_failure_action(tmp_path: Path, shell: str) -> None:
    config = _config(failure_action=Action.HALT, final_action=Action.REBOOT)
    run = _run_flow(tmp_path, shell, config, _local_target(device="UUID=never-there"))
    assert "kdump: waiting for UUID=never-there (0/3 s)" in run.out
    assert "kdump: dump failed: dump target UUID=never-there did not appear within 3 s" in run.out
    assert run.log.splitlines()[-1] == "ACTION halt -f"
    assert "kdump: failure action: halting" in run.out
    assert "kdump: final action:" not in run.out
    assert "makedumpfile" not in run.log
    rec = parse_outcome(Path(_paths(run.root)["kmsg"]).read_text())
    assert rec is not None and rec.complete
    assert rec.summary() == "failed: dump target UUID=never-there did not appear within 3 s"
    assert rec.targets[0].result == "failed"
    assert rec.duration is not None and rec.started == DATE   # the fake date's output


@pytest.mark.parametrize("shell", SHELLS)
def test_kdump_timeout_on_the_command_line_overrides(tmp_path: Path, shell: str) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 kdump.timeout=x7 reset_devices kdump.timeout=12 *\n")
    run = _run_flow(tmp_path, shell, _config(), _local_target(device="/nonexistent/dev"),
                    paths={"cmdline": str(cmdline)})
    assert "kdump: warning: ignoring kdump.timeout=x7: not a number of seconds" in run.out
    assert "waiting for /nonexistent/dev (10/12 s)" in run.out
    assert "did not appear within 12 s" in run.out


@pytest.mark.parametrize("shell", SHELLS)
def test_kdump_pre_failure_skips_the_dump(tmp_path: Path, shell: str, blockdev: Path) -> None:
    pre = _hook(tmp_path, "pre", "exit 3")
    config = _config(kdump_pre=pre, final_action=Action.HALT)
    run = _run_flow(tmp_path, shell, config, _local_target(), env={"FAKE_DEV": str(blockdev)})
    assert "kdump_pre exited with status 3: skipping the dump" in run.out
    assert "findfs" not in run.log and "makedumpfile" not in run.log
    assert run.log.splitlines()[-1] == "ACTION halt -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_collector_failure_keeps_incomplete_and_runs_failure_action(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    post = _hook(tmp_path, "post", 'echo "POST ran with [$1]" >>"$LOG"')
    config = _config(kdump_post=post, failure_action=Action.SHELL, final_action=Action.POWEROFF)
    run = _run_flow(tmp_path, shell, config, _local_target(),
                    env={"FAKE_DEV": str(blockdev), "FAKE_COLLECTOR_RC": "2"})
    dump = run.mnt / "var/crash" / f"127.0.0.1-{DATE}"
    assert not (dump / "vmcore").exists()
    assert (dump / "vmcore-dmesg.txt").exists()
    assert "kdump: dump failed: the core collector exited with status 2" in run.out
    assert "POST ran with [1]" in run.log
    tail = run.log.splitlines()[-2:]
    assert tail == ["ACTION shell -i", "ACTION poweroff -f"]


@pytest.mark.parametrize("shell", SHELLS)
def test_mount_failure_is_explained(tmp_path: Path, shell: str, blockdev: Path) -> None:
    run = _run_flow(tmp_path, shell, _config(), _local_target(fstype=None),
                    env={"FAKE_DEV": str(blockdev), "FAKE_MOUNT_RC": "32"})
    assert f"mount:[-o][rw][{blockdev}][{run.mnt}]" in run.log  # no -t: any filesystem
    assert f"kdump: dump failed: cannot mount {blockdev} (any filesystem)" in run.out
    assert run.log.splitlines()[-1] == "ACTION reboot -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_makedumpfile_dump_dmesg_when_vmcore_dmesg_is_missing(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    run = _run_flow(tmp_path, shell, _config(), _local_target(),
                    env={"FAKE_DEV": str(blockdev)}, found_binaries=["makedumpfile"])
    dump = run.mnt / "var/crash" / f"127.0.0.1-{DATE}"
    assert (dump / "vmcore-dmesg.txt").read_text() == "dmesg via makedumpfile\n"
    assert "vmcore-dmesg:" not in run.log


@pytest.mark.parametrize("shell", SHELLS)
def test_raw_dump_streams_flattened_output(tmp_path: Path, shell: str) -> None:
    raw = tmp_path / "raw-device"
    raw.write_bytes(b"")
    config = _config(target=Target(TargetKind.RAW, device=str(raw)),
                     core_collector=("makedumpfile", "-l", "-d", "31"))
    # A regular file stands in for the device: the test for a block device is the only
    # thing replaced.
    run = _run_flow(tmp_path, shell, config,
                    ResolvedTarget(TargetKind.RAW, str(raw), None, "/var/crash"),
                    target_template="target-raw.sh.j2", env={"FAKE_DEV": ""},
                    )
    # Without a block device the wait times out: the raw flow refuses a regular file.
    assert "kdump: dump failed: raw device" in run.out
    assert raw.read_bytes() == b""


@pytest.mark.parametrize("shell", SHELLS)
def test_raw_dump_to_block_node(tmp_path: Path, shell: str, blockdev: Path) -> None:
    out = tmp_path / "captured"
    config = _config(target=Target(TargetKind.RAW, device=str(blockdev)),
                     core_collector=("makedumpfile", "-l", "-d", "31"))
    fakes = dict(FAKES)
    try:
        FAKES["dd"] = f'log dd "$@"; cat >{shq(str(out))}'
        run = _run_flow(tmp_path, shell, config,
                        ResolvedTarget(TargetKind.RAW, str(blockdev), None, "/var/crash"),
                        target_template="target-raw.sh.j2")
    finally:
        FAKES.clear()
        FAKES.update(fakes)
    assert out.read_bytes() == b"makedumpfile\0\0\0\0FLATDATA"
    assert f"makedumpfile:[-F][-l][-d][31][{run.root}/proc/vmcore]" in run.log
    assert f"dd:[of={blockdev}][bs=512][conv=fsync]" in run.log
    assert "vmcore-dmesg" not in run.log  # none on raw, as Fedora
    assert "kdump: dump saved to " in run.out
    assert run.log.splitlines()[-1] == "ACTION reboot -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_module_loading_reports_failures(tmp_path: Path, shell: str) -> None:
    root = tmp_path / "m"
    p = _paths(root)
    kdir = Path(p["moddir"]) / "6.1.0-test"
    kdir.mkdir(parents=True)
    (kdir / "modules.load").write_text("kernel/a.ko\nkernel/bad.ko\n\nkernel/c.ko\n")
    ctx = _context(_config(), _local_target(), paths=p)
    _render_all(ctx, root, "target-local.sh.j2")
    bindir = root / "bin"
    bindir.mkdir()
    for name in ("insmod", "uname"):
        (bindir / name).write_text("#!/bin/sh\nlog() { shift; printf '%s ' \"$@\" >>\"$LOG\"; "
                                   "echo >>\"$LOG\"; }\n" + FAKES[name] + "\n")
        (bindir / name).chmod(0o755)
    log = root / "log"
    script = (_fake_wrappers(bindir, ("insmod", "uname"))
              + f'. {shq(p["lib_sh"])}\n. {shq(p["modules_sh"])}\n')
    argv = [shell, "sh"] if shell.endswith("busybox") else [shell]
    r = subprocess.run([*argv, "-c", script], env={"PATH": f"{bindir}:/usr/bin:/bin",
                                                   "LOG": str(log)},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert log.read_text().split("\n")[:3] == [f"{kdir}/kernel/a.ko ", f"{kdir}/kernel/bad.ko ",
                                               f"{kdir}/kernel/c.ko "]
    assert "kdump: error: cannot load module kernel/bad.ko: unknown symbol" in r.stdout
    assert "kdump: warning: loaded 2 kernel modules, 1 failed" in r.stdout


def test_init_mounts_and_sources_stages_in_order(tmp_path: Path) -> None:
    ctx = _context(_config(), _local_target())
    text = render(_env(), "init.sh.j2", ctx)
    assert text.startswith("#!/bin/sh\n")
    order = [text.index(s) for s in ("mount -t proc", "mount -t sysfs", "mount -t devtmpfs",
                                     "mount -t tmpfs -o mode=1777", ". /lib/kdump/lib.sh",
                                     ". /lib/kdump/init.d/20-modules.sh",
                                     ". /lib/kdump/init.d/90-kdump.sh", "kdump_failure")]
    assert order == sorted(order)
    if shutil.which("checkbashisms"):
        p = tmp_path / "init"
        p.write_text(text)
        assert subprocess.run(["checkbashisms", str(p)]).returncode == 0


def _run_to_rootfs(tmp_path: Path, shell: str, blockdev: Path,
                   env: Mapping[str, str] = ()) -> Run:
    """The flow with failure_action dump_to_rootfs: the target never appears (findfs finds
    nothing for it), the root filesystem UUID=root does (it is `blockdev`)."""
    config = _config(failure_action=Action.DUMP_TO_ROOTFS, final_action=Action.POWEROFF,
                     path="/var/crash")
    fake_findfs = f'log findfs "$@"; [ "$1" = UUID=root ] && echo {shq(str(blockdev))}'
    saved = dict(FAKES)
    try:
        FAKES["findfs"] = fake_findfs
        return _run_flow(tmp_path, shell, config, _local_target(device="UUID=gone"),
                         env=env, modules=["base", "kdump", "dump-to-rootfs"],
                         rootfs={"device": "UUID=root", "fstype": "xfs", "path": "/var/crash",
                                 "mount_options": ""},
                         paths={"sysroot": str(tmp_path / "sysroot")})
    finally:
        FAKES.clear()
        FAKES.update(saved)


@pytest.mark.parametrize("shell", SHELLS)
def test_dump_to_rootfs_after_a_failed_target(tmp_path: Path, shell: str,
                                              blockdev: Path) -> None:
    run = _run_to_rootfs(tmp_path, shell, blockdev)
    assert "kdump: dump failed: dump target UUID=gone did not appear within 3 s" in run.out
    assert f"mount:[-t][xfs][-o][rw][{blockdev}][{tmp_path / 'sysroot'}]" in run.log
    dump = tmp_path / "sysroot/var/crash" / f"127.0.0.1-{DATE}"
    assert (dump / "vmcore").read_text() == "VMCORE\n"
    assert "on the root filesystem UUID=root" in run.out
    assert run.log.splitlines()[-1] == "ACTION poweroff -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_dump_to_rootfs_without_a_known_root(tmp_path: Path, shell: str) -> None:
    config = _config(failure_action=Action.DUMP_TO_ROOTFS, final_action=Action.HALT)
    run = _run_flow(tmp_path, shell, config, _local_target(device="UUID=gone"),
                    modules=["base", "kdump", "dump-to-rootfs"])
    assert "dump to the root filesystem failed too: the root filesystem was not known" \
        in run.out
    assert run.log.splitlines()[-1] == "ACTION halt -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_pre_d_and_post_d_run_in_fedora_order(tmp_path: Path, shell: str,
                                              blockdev: Path) -> None:
    hookdir = tmp_path / "etc-kdump"
    scripts = {
        "pre.d/10-first": 'echo "PRE.D first" >>"$LOG"',
        "pre.d/20-fails": 'echo "PRE.D fails" >>"$LOG"; exit 4',
        "pre.d/30-not-executable": 'echo "MUST NOT RUN" >>"$LOG"',
        "post.d/10-post": 'echo "POST.D [$1]" >>"$LOG"',
    }
    for rel, body in scripts.items():
        p = hookdir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("#!/bin/sh\n" + body + "\n")
        p.chmod(0o644 if "not-executable" in rel else 0o755)
    pre = _hook(tmp_path, "pre", 'echo "KDUMP_PRE" >>"$LOG"')
    post = _hook(tmp_path, "post", 'echo "KDUMP_POST [$1]" >>"$LOG"')
    config = _config(kdump_pre=pre, kdump_post=post)
    run = _run_flow(tmp_path, shell, config, _local_target(), env={"FAKE_DEV": str(blockdev)},
                    paths={"pre_d": str(hookdir / "pre.d"), "post_d": str(hookdir / "post.d")})
    ours = [x for x in run.log.splitlines() if x.isupper() or x.startswith(("PRE", "POST",
                                                                            "KDUMP"))]
    assert ours == ["KDUMP_PRE", "PRE.D first", "PRE.D fails", "POST.D [0]", "KDUMP_POST [0]"]
    assert "pre.d/20-fails exited with status 4" in run.out
    assert "kdump: dump saved to" in run.out


# ---- ssh: the remote side, run as sshd runs it -----------------------------------------

# The fake ssh logs each remote command line, then runs it the way sshd does: the login
# shell gets the command line as one string.
FAKE_SSH = """#!/bin/sh
for a in "$@"; do last=$a; done
printf '%s\\n' "$last" >>"$REMOTE_LOG"
cd "$REMOTE_HOME" || exit 255
"""
RUN_REMOTE = 'PATH=/usr/bin:/bin exec sh -c "$last"'


@dataclass
class SshRun:
    out: str
    dump: Path          # the remote dump directory
    remote_log: str     # the remote command lines, one a line


def _ssh_dump(tmp_path: Path, shell: str, remote_path: str,
              run_remote: str = RUN_REMOTE) -> SshRun:
    """target-ssh.sh's target_prepare and target_dump against the fake ssh, which ends with
    `run_remote` (it has the remote command line in $last)."""
    root = tmp_path / "run"
    p = _paths(root, console="/dev/null")
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    Path(p["vmcore"]).parent.mkdir(parents=True)
    Path(p["vmcore"]).write_text("core")
    fake_ssh = bindir / "ssh"
    fake_ssh.write_text(FAKE_SSH + run_remote + "\n")
    fake_ssh.chmod(0o755)
    ssh = SshSettings(argv=(str(fake_ssh), "-p", "22", "root@10.0.2.100"),
                      destination="root@10.0.2.100", path=remote_path,
                      remote_prefix=remote_dir_prefix(remote_path), commands=dump_commands())
    ctx = _context(_config(), _local_target(), paths=p, ssh=ssh)
    _render_all(ctx, root, "target-ssh.sh.j2")
    fakes = ("date", "vmcore-dmesg", "makedumpfile", "sync")
    for name in fakes:
        (bindir / name).write_text('#!/bin/sh\nlog() { :; }\n' + FAKES[name] + "\n")
        (bindir / name).chmod(0o755)
    driver = (_fake_wrappers(bindir, fakes)
              + "".join(f". {shq(p[n])}\n" for n in ("lib_sh", "collector_sh", "target_sh"))
              + "kdump_net_up() { KDUMP_NET_LOCAL_IP=10.0.2.15; }\n"
              + 'if target_prepare && target_dump; then echo "SAVED $KDUMP_SAVED"; '
              + 'else echo "FAILED $KDUMP_REASON"; fi\n')
    argv = [shell, "sh"] if shell.endswith("busybox") else [shell]
    remote_home, remote_log = tmp_path / "remote", tmp_path / "remote.log"
    remote_home.mkdir(exist_ok=True)
    r = subprocess.run([*argv, "-c", driver], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path),
                            "REMOTE_HOME": str(remote_home), "REMOTE_LOG": str(remote_log)},
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(tmp_path.rglob("PWNED*"))
    return SshRun(r.stdout + r.stderr, Path(remote_path) / f"10.0.2.15-{DATE}",
                  remote_log.read_text())


@pytest.mark.parametrize("shell", SHELLS)
def test_ssh_dump_through_a_remote_shell(tmp_path: Path, shell: str) -> None:
    """target-ssh.sh's remote commands with a hostile dump path: the files land in it,
    nothing runs, and only the owner may read them. The vmcore is flushed by the remote dd
    and renamed only once the remote file holds every byte sent."""
    remote_path = str(tmp_path / "remote" / HOSTILE)
    run = _ssh_dump(tmp_path, shell, remote_path)
    dump = run.dump
    assert (dump / "vmcore.flat").read_bytes() == b"makedumpfile\0\0\0\0FLATDATA"
    assert (dump / "vmcore-dmesg.txt").read_text() == "fake dmesg: sysrq triggered crash\n"
    assert sorted(f.name for f in dump.iterdir()) == ["vmcore-dmesg.txt", "vmcore.flat"]
    assert {stat.S_IMODE(f.stat().st_mode) for f in dump.iterdir()} == {0o600}
    assert f"SAVED root@10.0.2.100:{remote_path}/10.0.2.15-{DATE}/vmcore.flat" in run.out
    c = dump_commands()
    # every remote command line starts with "$d" and "$n"; the count is the 24 bytes sent
    sent, keep = [x for x in run.remote_log.splitlines()
                  if x.endswith((c.send_vmcore, c.keep_vmcore))]
    assert sent.endswith(" && n= && " + c.send_vmcore) and "conv=fsync" in sent
    assert keep.endswith(" && n=24 && " + c.keep_vmcore)


@pytest.mark.parametrize("shell", SHELLS)
def test_ssh_short_remote_file_is_not_renamed(tmp_path: Path, shell: str) -> None:
    # the remote dd "succeeds" but keeps only 4 bytes (a lost tail)
    short = """case "$last" in
*vmcore-incomplete\\ conv=fsync*)
    head -c 4 | PATH=/usr/bin:/bin sh -c "$last"; rc=$?; cat >/dev/null; exit "$rc" ;;
esac
""" + RUN_REMOTE
    run = _ssh_dump(tmp_path, shell, str(tmp_path / "remote" / "crash"), short)
    assert (run.dump / "vmcore-incomplete").read_bytes() == b"make"
    assert not (run.dump / "vmcore.flat").exists()
    assert "SAVED" not in run.out
    assert (f"FAILED root@10.0.2.100 did not confirm 24 bytes in {tmp_path}/remote/crash/"
            f"10.0.2.15-{DATE}/vmcore-incomplete, or could not rename it") in run.out


def test_template_dests_are_the_layout_paths() -> None:
    """modules.d places every template at a path of image/layout.py, which the templates
    use to source each other."""
    from mkkdumprd.assemble.moduledef import load_all

    modules = load_all(data_dir("modules.d"))
    dests = {t.src: t.dest for m in modules.values() for t in m.templates}
    names = {**SCRIPTS, **{t: "target_sh" for t in TARGETS.values()}}
    assert set(dests) == set(names)
    assert {src: layout.TEMPLATE_PATHS[n] for src, n in names.items()} == dests
    # the directories the scripts mount on and the ssh files live in
    assert layout.MOUNT_POINT in modules["base"].dirs
    assert layout.SYSROOT in modules["dump-to-rootfs"].dirs
    assert layout.SSH_DIR in modules["ssh"].dirs


def test_template_vars_are_frozen_dataclasses_under_their_module_name(tmp_path: Path) -> None:
    from mkkdumprd.assemble.builder import _checked_vars
    from mkkdumprd.assemble.moduledef import ModuleDefError, load_all

    ctx = _context(_config(), _local_target())
    # nested dataclasses become nested dicts
    assert ctx["ssh"] == {"argv": SSH.argv, "destination": SSH.destination,
                          "path": SSH.path, "remote_prefix": SSH.remote_prefix,
                          "commands": vars(SSH.commands)}
    nfs = ctx["nfs"]
    assert isinstance(nfs, dict) and all(isinstance(v, Tainted) for v in nfs.values())
    with pytest.raises(ModuleDefError, match="would hide the template variable 'target'"):
        template_context(_config(), _local_target(), kver="k", arch="a", found_binaries=[],
                         init_scripts=[], modules=[], kernel_modules=[],
                         module_vars={"target": NFS})
    ssh_module = load_all(data_dir("modules.d"))["ssh"]
    assert _checked_vars(ssh_module, SSH) is SSH
    with pytest.raises(ModuleDefError, match="template_vars must return a frozen dataclass"):
        _checked_vars(ssh_module, {"argv": ["ssh"]})


# ---- durability: a dump is called vmcore only once it is on the target ------------------

@pytest.mark.parametrize("shell", SHELLS)
def test_failed_flush_keeps_vmcore_incomplete_and_runs_failure_action(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    config = _config(failure_action=Action.POWEROFF, final_action=Action.REBOOT)
    run = _run_flow(tmp_path, shell, config, _local_target(),
                    env={"FAKE_DEV": str(blockdev), "FAKE_SYNC_RC": "1"})
    dump = run.mnt / "var/crash" / f"127.0.0.1-{DATE}"
    assert (dump / "vmcore-incomplete").exists()
    assert not (dump / "vmcore").exists()
    assert f"sync:[{dump}/vmcore-incomplete]" in run.log
    assert "kdump: dump saved" not in run.out
    # the target's own path, not the capture kernel's mount point
    assert (f"kdump: dump failed: the vmcore could not be written to the target (); "
            f"/var/crash/127.0.0.1-{DATE} on UUID=1234/vmcore-incomplete is left and is not "
            "a complete dump") in run.out
    assert str(run.mnt) not in run.out.split("dump failed:", 1)[1]
    # vmcore-dmesg.txt is not renamed either when its flush fails
    assert (dump / "vmcore-dmesg-incomplete.txt").exists()
    assert run.log.splitlines()[-1] == "ACTION poweroff -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_flush_precedes_rename(tmp_path: Path, shell: str, blockdev: Path) -> None:
    run = _run_flow(tmp_path, shell, _config(), _local_target(),
                    env={"FAKE_DEV": str(blockdev)})
    dump = run.mnt / "var/crash" / f"127.0.0.1-{DATE}"
    lines = run.log.splitlines()
    # (the attempt's kexec-dmesg.log and the outcome record are written after the dump)
    flushes = [x for x in lines if x.startswith(("sync:", "makedumpfile:"))
               and OUTCOME_FILE not in x and "kexec-dmesg.log" not in x][-3:]
    assert flushes[1:] == [f"sync:[{dump}/vmcore-incomplete]", f"sync:[{dump}]"]
    assert (dump / "vmcore").read_text() == "VMCORE\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_collector_failure_names_no_file_it_did_not_leave(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    run = _run_flow(tmp_path, shell, _config(), _local_target(),
                    env={"FAKE_DEV": str(blockdev), "FAKE_COLLECTOR_RC": "2"})
    assert "kdump: dump failed: the core collector exited with status 2\n" in run.out
    assert "is left" not in run.out


@pytest.mark.parametrize("shell", SHELLS)
def test_dump_path_leading_off_the_target_is_refused(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    elsewhere = Path("/dev/shm") / f"kdump-test-{os.getpid()}-{tmp_path.name}"
    elsewhere.mkdir()
    try:
        assert os.stat(elsewhere).st_dev != os.stat(tmp_path).st_dev
        mnt = Path(_paths(tmp_path / "run")["mount_point"])
        (mnt / "var").mkdir(parents=True)
        # the target's /var/crash is a symlink out of it (into what is RAM at dump time)
        (mnt / "var" / "crash").symlink_to(elsewhere)
        config = _config(failure_action=Action.HALT, final_action=Action.REBOOT)
        run = _run_flow(tmp_path, shell, config, _local_target(),
                        env={"FAKE_DEV": str(blockdev)}, premade=True)
        assert "kdump: dump saved" not in run.out
        assert (f"kdump: dump failed: /var/crash/127.0.0.1-{DATE} on UUID=1234 is not on the "
                "dump target") in run.out
        assert "makedumpfile:[-l]" not in run.log
        assert not list(elsewhere.rglob("vmcore*"))
        assert run.log.splitlines()[-1] == "ACTION halt -f"
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.parametrize("shell", SHELLS)
def test_raw_write_failure_blames_dd_and_clears_the_header(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    out = tmp_path / "captured"
    config = _config(target=Target(TargetKind.RAW, device=str(blockdev)),
                     core_collector=("makedumpfile", "-l", "-d", "31"))
    fakes = dict(FAKES)
    try:
        # the device is full: dd writes part of the stream, fails, and the collector
        # dies of SIGPIPE; the header clear (if=/dev/zero) is recorded
        FAKES["dd"] = (f'log dd "$@"; case " $* " in *" if=/dev/zero "*) exit 0 ;; esac; '
                       f'head -c 8 >{shq(str(out))}; echo "dd: No space left on device" >&2; '
                       'exit 1')
        run = _run_flow(tmp_path, shell, config,
                        ResolvedTarget(TargetKind.RAW, str(blockdev), None, "/var/crash"),
                        target_template="target-raw.sh.j2")
    finally:
        FAKES.clear()
        FAKES.update(fakes)
    assert (f"kdump: dump failed: writing to {blockdev} failed (dd status 1: dd: No space "
            "left on device)") in run.out
    assert f"dd:[if=/dev/zero][of={blockdev}][bs=512][count=1][conv=fsync]" in run.log
    assert "kdump: dump saved" not in run.out


# ---- hooks are bounded ----------------------------------------------------------------

@pytest.mark.parametrize("shell", SHELLS)
def test_hung_hooks_are_killed_and_the_flow_goes_on(tmp_path: Path, shell: str,
                                                    blockdev: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 kdump.hook_timeout=1\n")
    # a busy loop: the fake `sleep` on PATH returns at once
    pre = _hook(tmp_path, "pre", 'echo "PRE started" >>"$LOG"; while :; do :; done')
    post = _hook(tmp_path, "post", 'echo "POST started" >>"$LOG"; while :; do :; done')
    config = _config(kdump_pre=pre, kdump_post=post, final_action=Action.POWEROFF)
    run = _run_flow(tmp_path, shell, config, _local_target(), env={"FAKE_DEV": str(blockdev)},
                    paths={"cmdline": str(cmdline)})
    assert f"kdump: error: {pre} did not finish within 1 s (kdump.hook_timeout) and was " \
        "killed" in run.out
    assert "kdump_pre failed (time limit); going on with the dump" in run.out
    assert "kdump: dump saved to" in run.out
    assert f"kdump: error: {post} did not finish within 1 s" in run.out
    assert "kdump_post exited with status 137" in run.out
    assert run.log.splitlines()[-1] == "ACTION poweroff -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_hook_timeout_zero_means_no_limit(tmp_path: Path, shell: str, blockdev: Path) -> None:
    pre = _hook(tmp_path, "pre", 'echo "PRE ran" >>"$LOG"')
    config = _config(kdump_pre=pre, hook_timeout=0)
    run = _run_flow(tmp_path, shell, config, _local_target(), env={"FAKE_DEV": str(blockdev)})
    assert "KDUMP_HOOK_TIMEOUT=0\n" in Path(_paths(run.root)["lib_sh"]).read_text()
    assert "PRE ran" in run.log
    assert "did not finish" not in run.out
    assert "kdump: dump saved to" in run.out


@pytest.mark.parametrize("shell", SHELLS)
def test_dump_to_rootfs_flush_failure_is_a_failure_too(tmp_path: Path, shell: str,
                                                       blockdev: Path) -> None:
    run = _run_to_rootfs(tmp_path, shell, blockdev, env={"FAKE_SYNC_RC": "1"})
    dump = tmp_path / "sysroot/var/crash" / f"127.0.0.1-{DATE}"
    assert (dump / "vmcore-incomplete").exists() and not (dump / "vmcore").exists()
    assert "dump saved" not in run.out
    assert ("dump to the root filesystem failed too: the vmcore could not be written to the "
            f"target (); /var/crash/127.0.0.1-{DATE} on the root filesystem/vmcore-incomplete "
            "is left") in run.out


@pytest.mark.parametrize("shell", SHELLS)
def test_watchdog_is_fed_until_the_final_action_then_magic_closed(tmp_path: Path,
                                                                   shell: str) -> None:
    """watchdog.sh feeds each device with the identity of one of the image's watchdogs (in
    the capture kernel's sysfs, relocated here) and nothing else; the final action stops the
    loops and writes the magic close 'V' last."""
    root = tmp_path / "w"
    p = _paths(root)
    sysw, devdir = Path(p["sys_watchdog"]), Path(p["watchdog_dev_dir"])
    # found by identity (spaces, quotes): two of the machine's, one the image was not for
    for name, identity in (("watchdog0", "i6300ESB timer"), ("watchdog2", "it's a $(watchdog)"),
                           ("watchdog1", "iTCO_wdt")):
        (sysw / name).mkdir(parents=True)
        (sysw / name / "timeout").write_text("3\n")
        (sysw / name / "identity").write_text(identity + "\n")
    devdir.mkdir(parents=True)
    (devdir / "watchdog1").write_text("")
    ctx = _context(_config(), _local_target(), paths=p)
    _render_all(ctx, root, "target-local.sh.j2")
    argv = [shell, "sh"] if shell.endswith("busybox") else [shell]
    script = (f'. {shq(p["lib_sh"])}\n. {shq(p["watchdog_sh"])}\n'
              # the first write happens when the loop starts: wait for it, not for a time
              f'while [ ! -s {shq(str(devdir / "watchdog0"))} ] || '
              f'[ ! -s {shq(str(devdir / "watchdog2"))} ]; do sleep 0.1; done\n'
              'reboot() { echo "ACTION reboot $*"; exit 0; }\n'
              # after the stop nothing may hold a device (a sleep that inherited the loop's
              # descriptor would, and the magic close could not open the real device again:
              # one opener at a time); the final action's stop is then a no-op
              'kdump_watchdog_stop\n'
              'for f in /proc/[0-9]*/fd/*; do\n'
              f'  case "$(readlink "$f")" in {shq(str(devdir))}/*) echo "HELD $f" ;; esac\n'
              'done\n'
              'kdump_action reboot\n')
    r = subprocess.run([*argv, "-c", script], env={"PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "HELD" not in r.stdout, r.stdout
    for fed_dev in ("watchdog0", "watchdog2"):
        fed = (devdir / fed_dev).read_text()
        assert fed.startswith("\n") and fed.endswith("\nV") and set(fed) == {"\n", "V"}, fed
    assert (devdir / "watchdog1").read_text() == "", "a watchdog of another driver was fed"
    assert f"kdump: watchdog: feeding {devdir}/watchdog0 (i6300ESB timer, timeout 3 s) every " \
        "1 s" in r.stdout
    assert f"kdump: watchdog: {devdir}/watchdog0 closed with the magic close" in r.stdout
    assert r.stdout.rstrip().endswith("ACTION reboot -f")


def _can_unshare_net() -> bool:
    try:
        return subprocess.run(["unshare", "--net", "--", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


FAKE_IP = r"""#!/bin/sh
# `ip` over a fake /sys/class/net ($SYS): renames move the device's directory, new bonds
# and VLANs get one; every call is logged
echo "ip $*" >>"$LOG"
case "$*" in
"link set dev "*" name "*) mv "$SYS/$4" "$SYS/$6" ;;
"link add "*" type bond") mkdir -p "$SYS/$3/bonding" ;;
"link add link "*" type vlan id "*) mkdir "$SYS/$5" ;;
esac
"""


@pytest.mark.parametrize("shell", SHELLS)
def test_network_stack_steps_rename_the_cards_and_build_the_bond_and_vlan(
        tmp_path: Path, shell: str) -> None:
    """The steps network/stack.py makes for a VLAN on an active-backup bond, run by
    network.sh against a fake sysfs and `ip`: the capture kernel named the two cards the
    other way round from the host (swapped through a free name), a third port's card is
    missing (left out, with a warning), then the bond with its mode, options and ports,
    the primary after the ports, the VLAN on top."""
    from mkkdumprd.network import stack
    from mkkdumprd.network.interfaces import DevKind, NetDevice

    a, b, c = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
    nics = [NetDevice(n, DevKind.PHYSICAL, m, "virtio_net")
            for n, m in (("eth0", a), ("eth1", b), ("eth2", c))]
    bond = NetDevice("bond0", DevKind.BOND, a, "bonding", tuple(nics),
                     bond_options=("mode=active-backup", "miimon=100", "primary=eth0"))
    vlan = NetDevice("bond0.7", DevKind.VLAN, a, "8021q", (bond,), vlan_id=7)
    steps = stack.rebuild(vlan).steps
    root = tmp_path / "n"
    p = _paths(root)
    sysnet = Path(p["sys_net"])
    for index, (name, mac) in enumerate((("eth0", b), ("eth1", a)), start=2):
        (sysnet / name / "device").mkdir(parents=True)
        (sysnet / name / "address").write_text(mac + "\n")
        (sysnet / name / "ifindex").write_text(f"{index}\n")
    network = NetworkSettings(iparg="x", mode="static", iface="bond0.7", macs=f"{a} {b} {c}",
                              family="4", addr="10.0.0.2/24", gw="", mtu="",
                              target="10.0.0.1", steps=steps)
    ctx = _context(_config(), _local_target(), paths=p, network=network)
    _render_all(ctx, root, "target-nfs.sh.j2")
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "ip").write_text(FAKE_IP)
    (bindir / "ip").chmod(0o755)
    log = root / "log"
    for tool in ("brctl", "vconfig"):
        (bindir / tool).write_text('#!/bin/sh\necho "TOOL $0 $*" >>"$LOG"\nexit 1\n')
        (bindir / tool).chmod(0o755)
    argv = [shell, "sh"] if shell.endswith("busybox") else [shell]
    # The fakes as shell functions (busybox runs its own `ip` applet before PATH), and in a
    # network namespace of its own where one is allowed: this must never reach the real
    # network devices of the machine running the test.
    netns = ["unshare", "--net", "--"] if _can_unshare_net() else []
    script = (_fake_wrappers(bindir, ("ip", "brctl", "vconfig"))
              + f". {shq(p['lib_sh'])}\n. {shq(p['network_sh'])}\n"
              + 'kdump_net_stack; echo "rc=$?"')
    r = subprocess.run([*netns, *argv, "-c", script],
                       env={"PATH": f"{bindir}:/usr/bin:/bin", "LOG": str(log),
                            "SYS": str(sysnet)}, capture_output=True, text=True, timeout=30)
    assert r.stdout.rstrip().endswith("rc=0"), r.stdout + r.stderr
    # the host's names now point at the host's cards
    assert (sysnet / "eth0/address").read_text() == a + "\n"
    assert (sysnet / "eth1/address").read_text() == b + "\n"
    assert f"kdump: warning: network: no card with MAC {c} (the host's eth2); going on " \
        "without it" in r.stdout
    bonding = sysnet / "bond0/bonding"
    assert (bonding / "mode").read_text() == "active-backup\n"
    assert (bonding / "miimon").read_text() == "100\n"
    assert (bonding / "primary").read_text() == "eth0\n"
    calls = log.read_text().splitlines()
    assert calls[:4] == ["ip link set dev eth0 down", "ip link set dev eth0 name kdump2",
                         "ip link set dev eth1 down", "ip link set dev eth1 name eth0"]
    assert calls[4:6] == ["ip link set dev kdump2 down", "ip link set dev kdump2 name eth1"]
    assert [c for c in calls if " master " in c] == [
        "ip link set dev eth0 master bond0", "ip link set dev eth1 master bond0"]
    assert not any("eth2" in c or c.startswith("TOOL") for c in calls)
    assert calls[-3:] == ["ip link set dev bond0 up",
                          "ip link add link bond0 name bond0.7 type vlan id 7",
                          "ip link set dev bond0.7 up"]
    assert "kdump: network: VLAN bond0.7, id 7 on bond0" in r.stdout


# ---- keep_dumps and the free-space check (dump_policy's filesystem targets) ---------------

def _old_dump(top: Path, name: str, ours: bool = True, complete: bool = True) -> Path:
    d = top / name
    d.mkdir(parents=True)
    if complete:
        (d / "vmcore").write_text("old")
    if ours:
        (d / "kexec-dmesg.log").write_text("kdump: capture image by mkkdumprd 0.1 for x\n")
    return d


@pytest.mark.parametrize("shell", SHELLS)
def test_keep_dumps_removes_only_this_hosts_oldest_complete_dumps(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    top = Path(_paths(tmp_path / "run")["mount_point"]) / "var/crash"
    old = [_old_dump(top, f"127.0.0.1-2026-01-01-00:00:0{i}") for i in range(3)]
    foreign = [_old_dump(top, "127.0.0.1-2025-01-01-00:00:00", ours=False),   # not ours
               _old_dump(top, "127.0.0.1-2025-02-01-00:00:00", complete=False),
               _old_dump(top, "10.0.0.9-2025-01-01-00:00:00"),                # another host
               _old_dump(top, "my-notes")]
    run = _run_flow(tmp_path, shell, _config(keep_dumps=2), _local_target(),
                    env={"FAKE_DEV": str(blockdev)}, premade=True)
    assert "keep_dumps 2: removing the old dump 127.0.0.1-2026-01-01-00:00:00" in run.out
    assert not old[0].exists() and old[1].exists() and old[2].exists()
    assert all(d.exists() for d in foreign)
    assert (top / f"127.0.0.1-{DATE}" / "vmcore").read_text() == "VMCORE\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_target_without_room_for_the_dump_is_skipped_untouched(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    saved = dict(FAKES)
    try:
        # the dry run says 1 PiB: no test filesystem has that much room
        FAKES["makedumpfile"] = ('case " $* " in *" --dry-run "*) log makedumpfile "$@"; '
                                 'echo "Write bytes     : 1125899906842624";; esac')
        config = _config(failure_action=Action.HALT, final_action=Action.REBOOT)
        run = _run_flow(tmp_path, shell, config, _local_target(),
                        env={"FAKE_DEV": str(blockdev)},
                        collector_estimate=["makedumpfile", "-d", "31", "--dry-run",
                                            "--show-stats"])
    finally:
        FAKES.clear()
        FAKES.update(saved)
    assert re.search(r"kdump: target ext4 UUID=1234:/var/crash: skipped: not enough free "
                     r"space: \d+ MiB free, the dump needs about 1073741825 MiB", run.out), \
        run.out
    assert "makedumpfile:[-d][31][--dry-run][--show-stats]" in run.log
    assert not list(run.mnt.rglob("*")), "a skipped target was written to"
    assert "umount:" in run.log
    results = (run.root / "run/kdump/results").read_text()
    assert results.startswith("ext4 UUID=1234:/var/crash\tskipped\tnot enough free space")
    assert run.log.splitlines()[-1] == "ACTION halt -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_an_attempt_past_its_time_limit_is_stopped_with_what_it_started(
        tmp_path: Path, shell: str, blockdev: Path) -> None:
    """The collector hangs: the attempt and every process below it are killed after
    kdump.attempt_timeout, the reason is written next to the partial dump, the target is
    unmounted and failure_action runs."""
    # 4 s, not 1: on a loaded machine the attempt must reach the collector before its time
    # is up, or the test proves nothing about killing it (a 1 s limit flaked under load).
    saved = dict(FAKES)
    pidfile = tmp_path / "collector.pid"
    try:
        FAKES["makedumpfile"] = f'echo $$ >{shq(str(pidfile))}; exec /bin/sleep 300'
        config = _config(failure_action=Action.HALT, final_action=Action.REBOOT)
        run = _run_flow(tmp_path, shell, config, _local_target(),
                        env={"FAKE_DEV": str(blockdev)}, attempt_timeout="4",
                        dump_policy="fallback")
    finally:
        FAKES.clear()
        FAKES.update(saved)
    why = "did not finish within 4 s (kdump.attempt_timeout) and was stopped"
    assert f"kdump: target ext4 UUID=1234:/var/crash: failed: {why}" in run.out, run.out
    dump = run.mnt / "var/crash" / f"127.0.0.1-{DATE}"
    assert (dump / "failure-reason.txt").read_text() == why + "\n"
    assert f"umount:[-l][{run.mnt}]" in run.log
    assert run.log.splitlines()[-1] == "ACTION halt -f"
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX", "the collector lives on"
