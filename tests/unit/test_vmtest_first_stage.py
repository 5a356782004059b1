"""The first stage of `mkkdumprd test --vm`: mkkdumprd's own loader in the guest, not kexec."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.cli.test_cmd import _cmdline_settings
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.reader import read_file, read_members
from mkkdumprd.loader.cmdline import split_words
from mkkdumprd.vmtest import first_stage as fs
from mkkdumprd.vmtest import guest_python as gp
from mkkdumprd.vmtest.qemu import Drive, VMSpec
from mkkdumprd.vmtest.run import first_kernel_append


def test_load_command_quotes_the_base_and_the_words() -> None:
    cmd = fs.load_command('BOOT_IMAGE=/vmlinuz root=UUID=1 quiet it\'s "x y"',
                          ["console=ttyS0", "kdump.timeout=10"])
    words = shlex.split(cmd)
    assert words[:3] == ["python3", "-m", "mkkdumprd.loader"]
    assert words[3:8] == ["load", "--kernel", fs.KERNEL, "--initrd", fs.IMAGE]
    assert words[8:10] == ["--cmdline", 'BOOT_IMAGE=/vmlinuz root=UUID=1 quiet it\'s "x y"']
    assert words[10:] == ["--append", "console=ttyS0", "--append", "kdump.timeout=10"]
    assert "--cmdline" not in fs.load_command(None, [])


def test_crash_script_loads_checks_then_crashes(tmp_path: Path) -> None:
    script = fs.crash_script(None, ["console=ttyS0"])
    load = script.index("step load python3 -m mkkdumprd.loader load")
    check = script.index("/sys/kernel/kexec_crash_loaded")
    crash = script.index("echo c > /proc/sysrq-trigger")
    assert load < check < crash
    assert "kexec " not in script
    (tmp_path / "init").write_text(script)
    subprocess.run(["sh", "-n", str(tmp_path / "init")], check=True)


HOSTILE = 'root=UUID=1 it\'s "a b" $(touch x) `y`\t-z'


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_crash_script_passes_shellcheck_with_hostile_words(tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.write_text(fs.crash_script(HOSTILE, ["console=ttyS0", "--evil=$(x)"]))
    r = subprocess.run(["shellcheck", "-s", "sh", "-S", "warning", str(init)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_hostile_words_reach_the_loader_as_they_are(tmp_path: Path) -> None:
    # Only the load line is evaluated, with a `step` that prints its arguments: the
    # script itself mounts and crashes, and runs only in a guest.
    line = next(ln for ln in fs.crash_script(HOSTILE, ["--evil=$(x)"]).splitlines()
                if ln.startswith("step load "))
    r = subprocess.run(["sh", "-c", "step() { shift; printf '%s\\0' \"$@\"; }; " + line],
                       capture_output=True, text=True, cwd=tmp_path)
    words = r.stdout.split("\0")[:-1]
    assert words[words.index("--cmdline") + 1] == HOSTILE
    assert words[-2:] == ["--append", "--evil=$(x)"]
    assert not (tmp_path / "x").exists()


def test_parse_steps_reads_a_console() -> None:
    con = (f"junk\x1b[2J{fs.STEP_BEGIN} load\r\nloaded /boot/vmlinuz\r\n"
           "[   1.5] random: crng init done\r\n"
           f"{fs.STEP_END} load rc=0\r\n{fs.CRASHING_MARKER}\r\n")
    steps = fs.parse_steps(con)
    assert steps["load"].rc == 0 and steps["load"].output == "loaded /boot/vmlinuz\n"


def test_first_kernel_words_reserve_and_log_to_the_serial_port() -> None:
    words = split_words(first_kernel_append("144M"))
    assert "crashkernel=144M" in words and "console=ttyS0" in words and "panic=-1" in words


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs busybox")
def test_first_stage_carries_this_machines_cmdline_settings(tmp_path: Path,
                                                            vmlinuz: Path) -> None:
    # The guest's loader reads them where `start` reads them on this machine.
    root = tmp_path / "root"
    (root / "etc/mkkdumprd").mkdir(parents=True)
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/mkkdumprd/cmdline.conf").write_text('CMDLINE_REMOVE="irqpoll"\n')
    (root / "etc/default/kdump-tools").write_text('KDUMP_CMDLINE_APPEND="quirk=1"\n')
    settings = _cmdline_settings(Host(root))
    assert [g for g, _f in settings] == ["/etc/default/kdump-tools",
                                         "/etc/mkkdumprd/cmdline.conf"]
    image = tmp_path / "capture.img"
    image.write_bytes(b"capture image bytes")
    out = fs.build_first_stage(vmlinuz, image, tmp_path / "first.img",
                               fs.crash_script(None, []), settings=settings)
    names = {m.path for m in read_members(out)}
    assert {"/etc", "/etc/default", "/etc/mkkdumprd"} <= names
    assert read_file(out, "/etc/default/kdump-tools") == b'KDUMP_CMDLINE_APPEND="quirk=1"\n'
    assert read_file(out, "/etc/mkkdumprd/cmdline.conf") == b'CMDLINE_REMOVE="irqpoll"\n'


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs busybox")
def test_first_stage_carries_python_the_loader_kernel_and_image(tmp_path: Path,
                                                                vmlinuz: Path) -> None:
    image = tmp_path / "capture.img"
    image.write_bytes(b"capture image bytes")
    out = fs.build_first_stage(vmlinuz, image, tmp_path / "first.img",
                               fs.crash_script(None, ["console=ttyS0"]))
    names = {m.path for m in read_members(out)}
    assert {"/init", fs.KERNEL, fs.IMAGE, "/usr/bin/python3"} <= names
    assert f"{gp.LOADER_ROOT}/mkkdumprd/loader/__main__.py" in names
    assert f"{gp.LOADER_ROOT}/mkkdumprd/loader/kexec.py" in names
    assert f"{gp.LOADER_ROOT}/mkkdumprd/data/arch/x86_64.toml" in names
    # The stdlib as bytecode only, and no kexec-tools.
    assert any(n.startswith(str(gp.STDLIB)) and n.endswith(".pyc") for n in names)
    assert not any(n.startswith(str(gp.STDLIB)) and n.endswith(".py") for n in names)
    assert not any(os.path.basename(n) == "kexec" for n in names)
    assert read_file(out, fs.IMAGE) == b"capture image bytes"
    assert b"mkkdumprd.loader load" in read_file(out, "/init")
    # The vmtest package is not needed by the loader and stays out of the guest.
    assert not any("/mkkdumprd/vmtest/" in n for n in names)


def test_drives_on_each_bus(tmp_path: Path) -> None:
    spec = VMSpec(tmp_path / "k", tmp_path / "i", "x", drives=(
        Drive(tmp_path / "a"), Drive(tmp_path / "b", bus="nvme"),
        Drive(tmp_path / "c", bus="sata"), Drive(tmp_path / "d", bus="scsi")), accel="tcg")
    argv = " ".join(spec.argv()[1:])
    assert f"file={tmp_path}/a,format=raw,if=virtio" in argv
    assert "-device nvme,drive=disk1" in argv
    assert "-device ide-hd,drive=disk2,bus=ide.2" in argv
    assert "-device scsi-hd,drive=disk3,bus=scsi3.0" in argv
    assert "-accel tcg" in argv and "-nic none" in argv


def test_hostfwd_on_loopback_only(tmp_path: Path) -> None:
    spec = VMSpec(tmp_path / "k", tmp_path / "i", "x", hostfwd=("tcp:127.0.0.1:2222-:22",))
    argv = spec.argv()
    assert argv[argv.index("-netdev") + 1] == \
        "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"
    with pytest.raises(UsageError, match=r"only tcp:127\.0\.0\.1"):
        VMSpec(tmp_path / "k", tmp_path / "i", "x", hostfwd=("tcp::2222-:22",)).argv()
