"""Class (a) of issue 14: every command as an unprivileged user either works or says in one
line that it cannot (needs root), exit 0-3, never a traceback.

Every command and subcommand of the CLI's table (cli.COMMAND_MODULES, walked through click)
must have a case here, so a new command cannot skip the check. Inputs are fake or safe:
images, trees and devices are files in a world-readable directory; commands that act on the
running kernel are refused before any call (MKKDUMPRD_FORBID_KEXEC is set as well).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from tests.support import unprivileged
from tests.support.debian_kernel import Kernel

CONF = "ext4 UUID=12345678-1234-1234-1234-123456789abc\npath /var/crash\n"

# Command path -> arguments; {d}: the world-readable directory, {w}: a directory nobody
# may write, {kver}/{kmoddir}: the Debian test kernel, {img}: an image built as root.
BUILD = ["--kver", "{kver}", "--kmoddir", "{kmoddir}", "--no-hostonly", "--add-drivers",
         "ext4", "-c", "{d}/kdump.conf"]
CASES: dict[str, list[str]] = {
    "build": [*BUILD, "-o", "{w}/nobody.img"],
    "config check": ["-c", "{d}/kdump.conf"],
    "config show": ["-c", "{d}/kdump.conf"],
    "crashkernel apply": ["--root", "{d}/sys-root", "--value", "256M"],
    "crashkernel parse": ["--arch", "x86_64", "--mem", "4G", "crashkernel=256M"],
    "crashkernel recommend": ["--image", "{img}"],
    "deps libs": ["/bin/ls"],
    "deps modules": ["--kver", "{kver}", "--kmoddir", "{kmoddir}", "ext4"],
    "estimate": [],
    "install-integration": ["--root", "{d}/sys-root", "--mkkdumprd", "/opt/m/mkkdumprd"],
    "load": ["--initrd", "{img}"],
    "ls": ["--why", "{img}"],
    "propagate": ["-c", "{d}/kdump.conf"],
    "pstore setup": [],
    "rebuild": ["--kver", "{kver}"],
    "reload": [],
    "report": [],
    "restart": [],
    "savecore": ["-c", "{d}/kdump.conf", "--device", "{d}/raw.bin", "--path", "{w}"],
    "showmem": [],
    "start": [],
    "status": [],
    "stop": [],
    "test": [],
    "unload": [],
}
# Extra runs of the same commands: the defaults that need root.
EXTRA: dict[str, list[str]] = {
    "build without -o": BUILD,
    "load --dry-run": ["--dry-run", "--initrd", "{img}"],
    "test --vm": ["--vm", "--accel", "tcg", "--image", "{img}", "--kernel", "{d}/no-kernel",
                  "--workdir", "{w}/vmtest"],
    "pstore --dry-run": ["--dry-run"],
    "pstore without --dry-run": [],
}


def _command_paths() -> set[str]:
    ctx = click.Context(main)
    found: set[str] = set()

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name])
        else:
            found.add(" ".join(path))
    walk(main, [])
    return found


def test_every_command_has_a_case() -> None:
    assert set(CASES) == _command_paths()


@pytest.fixture(scope="module")
def world(kernel: Kernel) -> Iterator[Path]:
    unprivileged.require()
    with unprivileged.world_dir() as d:
        (d / "kdump.conf").write_text(CONF)
        w = d / "writable"
        w.mkdir()
        os.chown(w, unprivileged.NOBODY, unprivileged.NOBODY)
        (d / "raw.bin").write_bytes(b"\0" * 65536)
        (d / "sys-root/etc/default/grub.d").mkdir(parents=True)
        (d / "sys-root/etc/default/grub").write_text('GRUB_CMDLINE_LINUX="quiet"\n')
        (d / "sys-root/etc/systemd/system").mkdir(parents=True)
        r = CliRunner().invoke(main, ["build", *[a.format(d=d, kver=kernel.kver,
                                                          kmoddir=kernel.kmoddir)
                                                 for a in BUILD], "-o", str(d / "built.img")])
        assert r.exit_code == 0, r.output
        (d / "built.img").chmod(0o644)
        yield d
        shutil.rmtree(w, ignore_errors=True)


@pytest.mark.parametrize("name", sorted({**CASES, **EXTRA}))
def test_command_as_nobody(name: str, world: Path, kernel: Kernel) -> None:
    args = {**CASES, **EXTRA}[name]
    words = name.split(" without ")[0].split(" --")[0].split()
    argv = [*words, *(a.format(d=world, w=world / "writable", kver=kernel.kver,
                               kmoddir=kernel.kmoddir, img=world / "built.img")
                      for a in args)]
    r = unprivileged.run_cli(argv, cwd=world)
    report = f"mkkdumprd {' '.join(argv)} -> rc {r.returncode}\n{r.stdout}{r.stderr}"
    assert r.returncode in (0, 1, 2, 3), report
    assert "Traceback" not in r.stderr, report
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("mkkdumprd: warning:")]
    if r.returncode in (1, 2):
        assert len(errors) == 1 and errors[0].startswith("mkkdumprd: error: "), report
    else:
        assert errors == [], report
