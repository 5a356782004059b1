"""`mkkdumprd pstore setup --apply | --remove` on fake roots: the ramoops words setup.py
proposes, written through the boot-configuration writer the crashkernel= words use."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.host import Host
from mkkdumprd.records import setup

RELEASE = "6.1.0-57-amd64"
IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-3ffdffff : System RAM
  01000000-01ffffff : Kernel code
  30000000-3effffff : Crash kernel
"""
ADDR = "0x8000000"
WORDS = [f"memmap=1M${ADDR}", f"ramoops.mem_address={ADDR}", "ramoops.mem_size=0x100000",
         "ramoops.record_size=65536", "ramoops.pmsg_size=65536", "ramoops.max_reason=1"]


def _write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _machine(root: Path, *, module: bool = True) -> Path:
    _write(root, "/proc/iomem", IOMEM)
    _write(root, "/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet\n")
    dep = "kernel/fs/pstore/ramoops.ko: kernel/lib/reed_solomon/reed_solomon.ko\n"
    _write(root, f"/lib/modules/{RELEASE}/modules.dep", dep if module else "")
    return root


def _cli(root: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["pstore", "setup", "--root", str(root),
                                  "--kernel-release", RELEASE, *args])
    return r.exit_code, r.stdout, r.stderr


def _grub_linux_args(root: Path) -> list[str]:
    """The linux line's arguments: the grub defaults sourced by sh as grub-mkconfig does,
    then grub.cfg's unquoted-word reading of them (a backslash escapes the next character)."""
    script = ('. "$1/etc/default/grub"; for f in "$1"/etc/default/grub.d/*.cfg; '
              'do [ -e "$f" ] && . "$f"; done; '
              'echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"')
    line = subprocess.run(["sh", "-c", script, "sh", str(root)], capture_output=True,
                          text=True, check=True).stdout
    assert "\\$" in line or "$" not in line, line     # grub.cfg would expand a bare $
    return [w.replace("\\$", "$") for w in line.split()]


@pytest.fixture
def debian(tmp_path: Path) -> Path:
    _write(tmp_path, "/etc/default/grub",
           'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n')
    (tmp_path / "etc/default/grub.d").mkdir()
    return _machine(tmp_path)


def test_proposal_is_what_apply_writes(debian: Path) -> None:
    assert setup.proposal(Host(debian), RELEASE)[0] == WORDS


def test_grub_d_apply_dry_run_then_apply_then_remove(debian: Path) -> None:
    cfg = debian / "etc/default/grub.d/mkkdumprd-ramoops.cfg"
    load = debian / "etc/modules-load.d/mkkdumprd-ramoops.conf"
    code, out, err = _cli(debian, "--apply", "--dry-run")
    assert code == 0, err
    assert "+++ b/etc/default/grub.d/mkkdumprd-ramoops.cfg" in out
    assert "+++ b/etc/modules-load.d/mkkdumprd-ramoops.conf" in out
    assert "dry run: nothing written" in out and not cfg.exists() and not load.exists()

    code, out, err = _cli(debian, "--apply")
    assert code == 0, err
    assert "run `update-grub`" in out and f"wrote {setup.MODULES_LOAD}" in out
    assert 'memmap=1M\\\\\\$0x8000000"' in cfg.read_text()
    assert _grub_linux_args(debian) == ["quiet", *WORDS]
    assert load.read_text().splitlines()[-1] == "ramoops"
    assert (debian / "var/lib/mkkdumprd/ramoops-applied").read_text() == " ".join(WORDS) + "\n"

    # the next boot reserved the region, so /proc/iomem no longer shows it as RAM: the
    # words written before are kept, not a new address
    _write(debian, "/proc/iomem", IOMEM.replace("00100000-3ffdffff : System RAM\n",
                                                "00100000-07ffffff : System RAM\n"
                                                "08000000-080fffff : Reserved\n"
                                                "08100000-3ffdffff : System RAM\n"))
    code, out, err = _cli(debian, "--apply")
    assert code == 0, err
    assert "already set; nothing to do" in out and "+++" not in out

    code, out, err = _cli(debian, "--remove")
    assert code == 0, err
    assert not cfg.exists() and not load.exists()
    assert not (debian / "var/lib/mkkdumprd/ramoops-applied").exists()
    assert _grub_linux_args(debian) == ["quiet"]


def test_json(debian: Path) -> None:
    code, out, err = _cli(debian, "--apply", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["words"] == WORDS and doc["efi"] is False
    assert doc["plan"]["kind"] == "grub.d"
    assert [c["path"] for c in doc["plan"]["changes"]] == [
        "/etc/default/grub.d/mkkdumprd-ramoops.cfg", str(setup.MODULES_LOAD)]
    assert doc["done"] == ["wrote /etc/default/grub.d/mkkdumprd-ramoops.cfg",
                           f"wrote {setup.MODULES_LOAD}"]


def test_beside_the_crashkernel_words(debian: Path) -> None:
    r = CliRunner().invoke(main, ["crashkernel", "apply", "--root", str(debian),
                                  "--value", "256M"])
    assert r.exit_code == 0, r.output
    assert _cli(debian, "--apply")[0] == 0
    # two drop-ins, sourced in name order (mkkdumprd-ramoops.cfg, then mkkdumprd.cfg)
    assert _grub_linux_args(debian) == ["quiet", *WORDS, "crashkernel=256M"]
    assert _cli(debian, "--remove")[0] == 0
    assert _grub_linux_args(debian) == ["quiet", "crashkernel=256M"]


def test_kernel_cmdline_leaves_the_administrators_memmap_alone(tmp_path: Path) -> None:
    root = _machine(tmp_path, module=False)
    before = "root=/dev/vda1 memmap=4G!12G ro\n"
    p = _write(root, "/etc/kernel/cmdline", before)
    code, out, err = _cli(root, "--apply")
    assert code == 0, err
    assert p.read_text() == "root=/dev/vda1 memmap=4G!12G ro " + " ".join(WORDS) + "\n"
    assert "modules-load" not in out                   # ramoops is builtin here
    assert _cli(root, "--remove")[0] == 0
    assert p.read_text() == before


def test_hand_set_ramoops_words_are_left_alone_unless_forced(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    p = _write(root, "/etc/kernel/cmdline", "ro ramoops.mem_size=0x200000\n")
    code, out, _ = _cli(root, "--apply")
    assert code == 0
    assert "hand-set: /etc/kernel/cmdline: ramoops.mem_size=0x200000" in out
    assert "left alone (use --force)" in out
    assert p.read_text() == "ro ramoops.mem_size=0x200000\n"
    assert not (root / "etc/modules-load.d").exists()
    code, out, err = _cli(root, "--apply", "--force")
    assert code == 0, err
    assert p.read_text() == "ro " + " ".join(WORDS) + "\n"


def test_grubby_refuses_words_with_a_dollar(tmp_path: Path) -> None:
    root = _machine(tmp_path)
    _write(root, "/usr/sbin/grubby", "#!/bin/sh\nexit 99\n")
    _write(root, "/boot/loader/entries/a.conf", "title x\noptions root=/dev/vda1 ro\n")
    code, _, err = _cli(root, "--apply")
    assert code == 1
    assert "not written through grubby" in err and "memmap=1M$0x8000000" in err


def test_efi_explains_and_writes_only_when_asked(debian: Path) -> None:
    (debian / "sys/firmware/efi").mkdir(parents=True)
    cfg = debian / "etc/default/grub.d/mkkdumprd-ramoops.cfg"
    code, out, err = _cli(debian, "--apply")
    assert code == 0, err
    assert "EFI pstore is available, so nothing is written" in out and not cfg.exists()
    code, out, err = _cli(debian, "--apply", "--with-efi")
    assert code == 0, err
    assert cfg.exists()


def test_usage_errors(debian: Path) -> None:
    assert _cli(debian, "--apply", "--remove")[0] == 2
    assert _cli(debian, "--dry-run")[0] == 2
    code, out, _ = _cli(debian)
    assert code == 0 and "add to the kernel command line: " + " ".join(WORDS) in out
    assert not (debian / "etc/default/grub.d/mkkdumprd-ramoops.cfg").exists()


def test_a_running_region_set_up_otherwise_gets_no_second_one(debian: Path) -> None:
    _write(debian, "/proc/cmdline", "root=/dev/vda1 ramoops.mem_address=0x9000000 "
                                    "ramoops.mem_size=0x100000\n")
    code, out, err = _cli(debian, "--apply")
    assert code == 0, err
    assert "ramoops: already configured" in out and "nothing written" in out
    assert not (debian / "etc/default/grub.d/mkkdumprd-ramoops.cfg").exists()
    # once it is ours (recorded), --apply is idempotent while it runs
    assert _cli(debian, "--apply", "--force")[0] == 0
    _write(debian, "/proc/cmdline", "root=/dev/vda1 " + " ".join(WORDS) + "\n")
    code, out, err = _cli(debian, "--apply")
    assert code == 0, err
    assert "already set; nothing to do" in out


def test_apply_without_a_proposal_fails(tmp_path: Path) -> None:
    _write(tmp_path, "/proc/iomem", "00000000-00000000 : System RAM\n")
    _write(tmp_path, "/etc/kernel/cmdline", "ro\n")
    code, _, err = _cli(tmp_path, "--apply")
    assert code == 1 and "nothing to apply: cannot pick an address" in err
    assert (tmp_path / "etc/kernel/cmdline").read_text() == "ro\n"
