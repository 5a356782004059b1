"""The grub drop-ins `crashkernel apply` and `pstore setup --apply` write, read by Debian's
real grub-mkconfig: the linux lines of the grub.cfg it generates carry the words, and
grub-script-check accepts the file.

A minimal bookworm root (the cached debootstrap of test_deb_clean_root) gets grub2-common
from deb.debian.org, a dummy kernel in /boot and a grub-probe stand-in (a chroot has no
block devices for the real one to look at: it answers for an ext4 root on /dev/vda1).
mkkdumprd writes into the root with `--root`, from this machine, as it would for an image
builder; grub-mkconfig runs inside. Then grub's own reading of the line (a backslash keeps
the next character: `\\$` is a literal `$`) must give exactly the words setup.py proposes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.host import Host
from mkkdumprd.records.setup import proposal
from tests.support.debian_root import Recipe, apt, inside, unpack

RECIPE = Recipe("bookworm", name="bookworm-minbase")
DEFAULT_GRUB = Path(__file__).parents[1] / "unit/data/grub2-common-2.06-13+deb12u2.default-grub"
KVER = "6.1.0-57-amd64"
IOMEM = "00001000-0009fbff : System RAM\n00100000-3ffdefff : System RAM\n"
GRUB_PROBE = """#!/bin/sh
# stand-in for the test: an ext4 root on /dev/vda1
case "$*" in
*--target=device*) echo /dev/vda1 ;;
*--target=fs_uuid*) echo 0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e ;;
*--target=fs*) echo ext4 ;;
*--target=partmap*) echo msdos ;;
*--target=drive*) echo "(hd0,msdos1)" ;;
*--target=compatibility_hint*) echo hd0,msdos1 ;;
*) ;;
esac
"""


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    r = unpack(RECIPE, tmp_path / "root")
    apt(r, RECIPE, "install", "grub2-common")
    probe = r / "usr/sbin/grub-probe"
    probe.write_text(GRUB_PROBE)
    probe.chmod(0o755)
    # grub-pc's postinst would install this (ucf); grub2-common alone does not
    shutil.copy(DEFAULT_GRUB, r / "etc/default/grub")
    (r / "boot/grub").mkdir(parents=True, exist_ok=True)
    (r / f"boot/vmlinuz-{KVER}").write_bytes(b"\0" * 512)
    (r / f"boot/initrd.img-{KVER}").write_bytes(b"\0" * 512)
    (r / "proc").mkdir(exist_ok=True)
    (r / "proc/iomem").write_text(IOMEM)
    (r / "proc/cmdline").write_text("BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro quiet\n")
    yield r
    shutil.rmtree(r, ignore_errors=True)


def _linux_lines(grub_cfg: str) -> list[list[str]]:
    """The arguments of every `linux` line, as grub's lexer reads unquoted words."""
    return [[re.sub(r"\\(.)", r"\1", w) for w in line.split()[2:]]
            for line in grub_cfg.splitlines() if line.strip().startswith("linux\t")
            or line.strip().startswith("linux ")]


@pytest.mark.slow  # 18-48 s here: the root unpacked, grub2-common (cached debs), grub-mkconfig
def test_grub_mkconfig_reads_the_drop_ins(root: Path) -> None:
    words, _ = proposal(Host(root), KVER)
    assert words[0].startswith("memmap=1M$")
    r = CliRunner().invoke(main, ["crashkernel", "apply", "--root", str(root),
                                  "--value", "1G-4G:192M,4G-:256M"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["pstore", "setup", "--apply", "--root", str(root),
                                  "--kernel-release", KVER])
    assert r.exit_code == 0, r.output
    inside(root, "grub-mkconfig", "-o", "/boot/grub/grub.cfg")
    cfg = (root / "boot/grub/grub.cfg").read_text()
    inside(root, "grub-script-check", "/boot/grub/grub.cfg")
    lines = _linux_lines(cfg)
    default = [a for a in lines if "single" not in a]
    assert default, cfg
    for args in default:
        # the drop-ins in name order: mkkdumprd-ramoops.cfg, then mkkdumprd.cfg
        assert args[-2 - len(words):] == ["quiet", *words, "crashkernel=1G-4G:192M,4G-:256M"]
    assert f"memmap=1M\\${words[0].split('$')[1]}" in cfg      # escaped in grub.cfg itself
    # undone: grub-mkconfig's lines lose exactly the ramoops words
    r = CliRunner().invoke(main, ["pstore", "setup", "--remove", "--root", str(root)])
    assert r.exit_code == 0, r.output
    inside(root, "grub-mkconfig", "-o", "/boot/grub/grub.cfg")
    for args in _linux_lines((root / "boot/grub/grub.cfg").read_text()):
        assert not any(w.startswith(("memmap=", "ramoops.")) for w in args), args
