"""The generated /init and dump scripts: quoting enforced, syntax valid, and the dump flow
run for real (busybox sh and the system sh) against fake tools in a temp directory.

Hostile configuration values (spaces, quotes, $(...), backticks, ;, newlines) must reach
the tools as the exact same bytes and run nothing.
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
from mkkdumprd.resources import data_dir

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


def _context(config: KdumpConfig, target: ResolvedTarget, *, dmesg: bool = True,
             **override: object) -> dict[str, object]:
    ctx = template_context(config, target, kver="6.1.0-test", arch="x86_64",
                           found_binaries=["makedumpfile", *(["vmcore-dmesg"] if dmesg else [])],
                           init_scripts=["/lib/kdump/init.d/20-modules.sh",
                                         "/lib/kdump/init.d/90-kdump.sh"],
                           modules=["base", "kdump"], kernel_modules=["virtio_blk"],
                           timeout=3)
    ctx.update({k: taint(v) for k, v in override.items()})
    return ctx


SCRIPTS = {
    "init.sh.j2": "init",
    "lib.sh.j2": "lib.sh",
    "modules.sh.j2": "init.d/20-modules.sh",
    "kdump.sh.j2": "init.d/90-kdump.sh",
    "collector.sh.j2": "collector.sh",
    "rootfs.sh.j2": "rootfs.sh",
}


def _render_all(ctx: Mapping[str, object], libdir: Path, target_template: str) -> None:
    env = _env()
    for src, dest in {**SCRIPTS, target_template: "target.sh"}.items():
        out = libdir / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(env, src, ctx))


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("target_template", ["target-local.sh.j2", "target-raw.sh.j2"])
def test_rendered_scripts_pass_sh_n_with_hostile_values(tmp_path: Path, shell: str,
                                                        target_template: str) -> None:
    config = _config(kdump_pre=HOSTILE, kdump_post=HOSTILE,
                     core_collector=("makedumpfile", "-d", "31", HOSTILE))
    ctx = _context(config, _local_target(device=HOSTILE, path="/" + HOSTILE, fstype=HOSTILE))
    _render_all(ctx, tmp_path, target_template)
    for f in sorted(tmp_path.rglob("*")):
        if f.is_file():
            argv = [shell, "sh", "-n", str(f)] if shell.endswith("busybox") else \
                [shell, "-n", str(f)]
            r = subprocess.run(argv, capture_output=True, text=True)
            assert r.returncode == 0, f"{f.name}: {r.stderr}"
    assert not list(tmp_path.rglob("PWNED*"))


# ---- running the dump flow against fakes ----------------------------------------------

FAKES = {
    # Every fake logs its argv as [arg][arg]... so word boundaries are visible.
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
}

DRIVER = """\
reboot() { echo "ACTION reboot $*" >>"$LOG"; exit 0; }
poweroff() { echo "ACTION poweroff $*" >>"$LOG"; exit 0; }
halt() { echo "ACTION halt $*" >>"$LOG"; exit 0; }
sh() { echo "ACTION shell $*" >>"$LOG"; }
. "$LIBDIR/lib.sh"
. "$LIBDIR/init.d/90-kdump.sh"
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
              premade: bool = False, **override: object) -> Run:
    root = tmp_path / "run"
    libdir, bindir, mnt = root / "lib", root / "bin", root / "mnt"
    for d in (libdir, bindir, mnt):
        d.mkdir(parents=True, exist_ok=premade)
    vmcore = root / "proc-vmcore"
    vmcore.write_text("core")
    sysrq = root / "sysrq-trigger"
    log = root / "log"
    values: dict[str, object] = {
        "libdir": str(libdir), "mnt": str(mnt), "vmcore": str(vmcore),
        "sysrq_trigger": str(sysrq), "moddir": str(root / "modules"),
        "cmdline": str(root / "no-cmdline"), "console": "/dev/null",
        "hookdir": str(root / "no-hooks"), **override}
    ctx = _context(config, target, **values)
    _render_all(ctx, libdir, target_template)
    for name, body in FAKES.items():
        f = bindir / name
        # One write per line: the two sides of a pipeline log at the same time.
        f.write_text('#!/bin/sh\nlog() { _l="$1:"; shift; for a in "$@"; do _l="$_l[$a]"; '
                     'done; printf "%s\\n" "$_l" >>"$LOG"; }\n' + body + "\n")
        f.chmod(0o755)
    (root / "driver.sh").write_text(_fake_wrappers(bindir, FAKES) + DRIVER)
    argv = [shell, "sh"] if shell.endswith("busybox") else [shell]
    full_env = {"PATH": f"{bindir}:/usr/bin:/bin", "LOG": str(log), "LIBDIR": str(libdir),
                "HOME": str(root), **dict(env)}
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
    assert (f"makedumpfile:[-l][--message-level][7][-d][31][{HOSTILE}][{run.root}/proc-vmcore]"
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


@pytest.mark.parametrize("shell", SHELLS)
def test_kdump_timeout_on_the_command_line_overrides(tmp_path: Path, shell: str) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 kdump.timeout=x7 reset_devices kdump.timeout=12 *\n")
    run = _run_flow(tmp_path, shell, _config(), _local_target(device="/nonexistent/dev"),
                    cmdline=str(cmdline))
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
    assert f"makedumpfile:[-F][-l][-d][31][{run.root}/proc-vmcore]" in run.log
    assert f"dd:[of={blockdev}][bs=512][conv=fsync]" in run.log
    assert "vmcore-dmesg" not in run.log  # none on raw, as Fedora
    assert "kdump: dump saved to " in run.out
    assert run.log.splitlines()[-1] == "ACTION reboot -f"


@pytest.mark.parametrize("shell", SHELLS)
def test_module_loading_reports_failures(tmp_path: Path, shell: str) -> None:
    root = tmp_path / "m"
    moddir = root / "modules"
    kdir = moddir / "6.1.0-test"
    kdir.mkdir(parents=True)
    (kdir / "modules.load").write_text("kernel/a.ko\nkernel/bad.ko\n\nkernel/c.ko\n")
    libdir = root / "lib"
    ctx = _context(_config(), _local_target(), libdir=str(libdir), moddir=str(moddir))
    _render_all(ctx, libdir, "target-local.sh.j2")
    bindir = root / "bin"
    bindir.mkdir()
    for name in ("insmod", "uname"):
        (bindir / name).write_text("#!/bin/sh\nlog() { shift; printf '%s ' \"$@\" >>\"$LOG\"; "
                                   "echo >>\"$LOG\"; }\n" + FAKES[name] + "\n")
        (bindir / name).chmod(0o755)
    log = root / "log"
    script = (_fake_wrappers(bindir, ("insmod", "uname"))
              + f'. "{libdir}/lib.sh"\n. "{libdir}/init.d/20-modules.sh"\n')
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


@pytest.mark.parametrize("shell", SHELLS)
def test_dump_to_rootfs_after_a_failed_target(tmp_path: Path, shell: str,
                                              blockdev: Path) -> None:
    config = _config(failure_action=Action.DUMP_TO_ROOTFS, final_action=Action.POWEROFF,
                     path="/var/crash")
    # The target never appears (findfs finds nothing for it), the root filesystem does.
    fake_findfs = f'log findfs "$@"; [ "$1" = UUID=root ] && echo {shq(str(blockdev))}'
    saved = dict(FAKES)
    try:
        FAKES["findfs"] = fake_findfs
        run = _run_flow(tmp_path, shell, config, _local_target(device="UUID=gone"),
                        modules=["base", "kdump", "dump-to-rootfs"],
                        rootfs={"device": "UUID=root", "fstype": "xfs", "path": "/var/crash"},
                        sysroot=str(tmp_path / "sysroot"))
    finally:
        FAKES.clear()
        FAKES.update(saved)
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
                    hookdir=str(hookdir))
    ours = [x for x in run.log.splitlines() if x.isupper() or x.startswith(("PRE", "POST",
                                                                            "KDUMP"))]
    assert ours == ["KDUMP_PRE", "PRE.D first", "PRE.D fails", "POST.D [0]", "KDUMP_POST [0]"]
    assert "pre.d/20-fails exited with status 4" in run.out
    assert "kdump: dump saved to" in run.out


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
    flushes = [x for x in lines if x.startswith(("sync:", "makedumpfile:"))][-3:]
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
        mnt = tmp_path / "run" / "mnt"
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
                    cmdline=str(cmdline))
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
    assert "KDUMP_HOOK_TIMEOUT=0\n" in (run.root / "lib/lib.sh").read_text()
    assert "PRE ran" in run.log
    assert "did not finish" not in run.out
    assert "kdump: dump saved to" in run.out


@pytest.mark.parametrize("shell", SHELLS)
def test_dump_to_rootfs_flush_failure_is_a_failure_too(tmp_path: Path, shell: str,
                                                       blockdev: Path) -> None:
    config = _config(failure_action=Action.DUMP_TO_ROOTFS, final_action=Action.POWEROFF,
                     path="/var/crash")
    fake_findfs = f'log findfs "$@"; [ "$1" = UUID=root ] && echo {shq(str(blockdev))}'
    saved = dict(FAKES)
    try:
        FAKES["findfs"] = fake_findfs
        run = _run_flow(tmp_path, shell, config, _local_target(device="UUID=gone"),
                        env={"FAKE_SYNC_RC": "1"}, modules=["base", "kdump", "dump-to-rootfs"],
                        rootfs={"device": "UUID=root", "fstype": "xfs", "path": "/var/crash"},
                        sysroot=str(tmp_path / "sysroot"))
    finally:
        FAKES.clear()
        FAKES.update(saved)
    dump = tmp_path / "sysroot/var/crash" / f"127.0.0.1-{DATE}"
    assert (dump / "vmcore-incomplete").exists() and not (dump / "vmcore").exists()
    assert "dump saved" not in run.out
    assert ("dump to the root filesystem failed too: the vmcore could not be written to the "
            f"target (); /var/crash/127.0.0.1-{DATE} on the root filesystem/vmcore-incomplete "
            "is left") in run.out


# ---- ssh: the remote side confirms what it holds before its rename --------------------

def _ssh_flow(tmp_path: Path, shell: str, fake_ssh: str) -> tuple[Run, Path]:
    """The ssh target against a fake ssh that runs the remote command in a local shell."""
    remote = tmp_path / "remote"
    remote.mkdir()
    ssh = tmp_path / "fake-ssh"
    ssh.write_text("#!/bin/sh\nfor a in \"$@\"; do last=$a; done\n" + fake_ssh + "\n")
    ssh.chmod(0o755)
    config = _config(target=Target(TargetKind.SSH, server="root@backup"),
                     core_collector=("makedumpfile", "-F", "-l", "-d", "31"),
                     failure_action=Action.POWEROFF, final_action=Action.REBOOT)
    target = ResolvedTarget(TargetKind.SSH, None, None, "/var/crash", server="root@backup")
    stubs = (f"kdump_net_up() {{ KDUMP_NET_LOCAL_IP=10.0.0.1; }}\n"
             f"kdump_uptime() {{ echo 1; }}\n"
             f"KDUMP_SSH={shq(str(ssh))}; KDUMP_SSH_DEST=root@backup; KDUMP_SSH_KEY=/k\n"
             f"KDUMP_SSH_KNOWN_HOSTS=/kh; KDUMP_SSH_PORT=22; KDUMP_SSH_PATH=/var/crash\n"
             f"KDUMP_SSH_RPATH={shq(str(remote) + '/')}\n")
    real_render_all = _render_all

    def render_with_stubs(ctx: Mapping[str, object], libdir: Path, template: str) -> None:
        real_render_all(ctx, libdir, template)
        t = libdir / "target.sh"
        t.write_text(t.read_text().replace(". /lib/kdump/network.sh\n", stubs)
                     .replace(". /lib/kdump/ssh.env\n", ""))

    globals()["_render_all"] = render_with_stubs
    try:
        run = _run_flow(tmp_path, shell, config, target, target_template="target-ssh.sh.j2")
    finally:
        globals()["_render_all"] = real_render_all
    return run, remote / f"10.0.0.1-{DATE}"


@pytest.mark.parametrize("shell", SHELLS)
def test_ssh_rename_after_the_remote_holds_every_byte(tmp_path: Path, shell: str) -> None:
    run, rdir = _ssh_flow(tmp_path, shell, 'sh -c "$last"')
    assert (rdir / "vmcore.flat").read_bytes() == b"makedumpfile\0\0\0\0FLATDATA"
    assert not (rdir / "vmcore-incomplete").exists()
    assert "kdump: dump saved to root@backup:/var/crash/10.0.0.1-" in run.out


@pytest.mark.parametrize("shell", SHELLS)
def test_ssh_short_remote_file_is_not_renamed(tmp_path: Path, shell: str) -> None:
    # the remote dd "succeeds" but keeps only 4 bytes (a lost tail)
    run, rdir = _ssh_flow(tmp_path, shell, '''case "$last" in
*"vmcore-incomplete conv=fsync"*)
    f=${last#*of=}; f=${f%% conv=*}; head -c 4 >"$f"; cat >/dev/null ;;
*) sh -c "$last" ;;
esac''')
    assert (rdir / "vmcore-incomplete").read_bytes() == b"make"
    assert not (rdir / "vmcore.flat").exists()
    assert "kdump: dump saved" not in run.out
    assert "kdump: dump failed: root@backup did not confirm 24 bytes in /var/crash/10.0.0.1-" \
        in run.out
    assert run.log.splitlines()[-1] == "ACTION poweroff -f"
