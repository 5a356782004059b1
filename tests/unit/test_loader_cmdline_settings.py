"""The capture command line from Debian's, Fedora's and mkkdumprd's settings files.

SAFETY: loads go through FakeKexec; the service runs without a kernel (report only).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.errors import ConfigError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.lifecycle import service
from mkkdumprd.loader import live, shell_vars
from mkkdumprd.loader import load as loader
from mkkdumprd.loader.cmdline_settings import CmdlineSettings, capture_words, read_settings
from tests.support.fake_kexec import FakeKexec

KVER = "6.1.0-56-amd64"
X86 = load_arch("x86_64")
M = 1 << 20


def _write(root: Path, rel: str, data: str | bytes) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)
    return p


def test_shell_vars_reads_assignments_without_a_shell() -> None:
    text = ("# comment\n\nA=plain\nexport B=\"two words\"  # trailing\n"
            "C='single $x'\nD=\"esc \\\" \\$ \\\\\"\nE=\nA=again\n")
    got = shell_vars.parse(text, "/etc/f")
    assert {k: v.value for k, v in got.items()} == {
        "A": "again", "B": "two words", "C": "single $x", "D": 'esc " $ \\', "E": ""}
    assert str(got["B"].where) == "/etc/f:4"


@pytest.mark.parametrize(("line", "words"), [
    ('A="$(reboot)"', "needs a shell"),
    ("A=`id`", "needs a shell"),
    ("A=x; B=y", "needs a shell"),
    ('A="unterminated', "unterminated"),
    (". /etc/other", "not a NAME=VALUE"),
    ("if true; then", "not a NAME=VALUE"),
    ("A=x y", "unexpected 'y'"),
    ("A=$HOME", "needs a shell"),
])
def test_shell_vars_refuses_what_needs_a_shell(line: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        shell_vars.parse(f"# c\n{line}\n", "/etc/sysconfig/kdump")
    assert str(ei.value).startswith("/etc/sysconfig/kdump:2: ") and words in str(ei.value)


def _origins(words: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {w.text: w.origin for w in words}


def test_precedence_and_origins(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/default/kdump-tools",
           'KDUMP_CMDLINE="root=x console=ttyS1 quiet"\n'
           'KDUMP_CMDLINE_APPEND="reset_devices systemd.unit=kdump-tools-dump.service '
           'nr_cpus=2"\nKDUMP_KEXEC_ARGS="-s -d"\n')
    _write(tmp_path, "/etc/sysconfig/kdump",
           'KDUMP_COMMANDLINE="console=ttyS0 foo=1 hugepages=8"\n'
           'KDUMP_COMMANDLINE_REMOVE="hugepages irqpoll"\n'
           'KDUMP_COMMANDLINE_APPEND=\'nr_cpus=3 dyndbg="a b"\'\nKEXEC_ARGS="-s"\n')
    _write(tmp_path, "/etc/mkkdumprd/cmdline.conf", 'CMDLINE_APPEND="nr_cpus=4 irqpoll"\n')
    s = read_settings(Host(tmp_path))
    # Fedora's base replaces Debian's (later file wins); removes add up.
    assert [w.text for w in s.base or ()] == ["console=ttyS0", "foo=1", "hugepages=8"]
    assert s.notes == ("/etc/default/kdump-tools:3: KDUMP_KEXEC_ARGS: -d not applied "
                       "(mkkdumprd loads with kexec_file_load itself)",)
    words = capture_words("BOOT_IMAGE=/v root=/dev/sda ro", "x86_64", X86.cmdline_remove,
                          X86.cmdline_append, s)
    o = _origins(words)
    assert "BOOT_IMAGE=/v" not in o and "hugepages=8" not in o
    assert o["console=ttyS0"] == "/etc/sysconfig/kdump:1 KDUMP_COMMANDLINE"
    assert o["reset_devices"] == "/etc/default/kdump-tools:2 KDUMP_CMDLINE_APPEND"
    # a double-quoted kernel value keeps its space
    assert o['dyndbg="a b"'] == "/etc/sysconfig/kdump:3 KDUMP_COMMANDLINE_APPEND"
    # nr_cpus: the last file wins; the arch default irqpoll was removed, ours brings it back
    assert [w.text for w in words if w.text.startswith("nr_cpus")] == ["nr_cpus=4"]
    assert o["nr_cpus=4"] == o["irqpoll"] == "/etc/mkkdumprd/cmdline.conf:1 CMDLINE_APPEND"
    assert o["mce=off"] == "x86_64 default (data/arch/x86_64.toml)"
    # --cmdline beats every file's base; --append comes last
    words = capture_words("", "x86_64", X86.cmdline_remove, X86.cmdline_append, s,
                          cmdline="console=hvc0", extra=["nr_cpus=5"])
    o = _origins(words)
    assert o["console=hvc0"] == "--cmdline" and o["nr_cpus=5"] == "--append"
    assert "console=ttyS0" not in o


def test_user_remove_drops_arch_defaults_only() -> None:
    s = CmdlineSettings(remove=(), append=())
    base = capture_words("a=1", "x86_64", (), ("irqpoll", "nr_cpus=1"), s)
    assert [w.text for w in base] == ["a=1", "irqpoll", "nr_cpus=1"]
    s = read_settings_from({"/etc/mkkdumprd/cmdline.conf":
                            'CMDLINE_REMOVE="irqpoll a"\nCMDLINE_APPEND="irqpoll=x"\n'})
    got = capture_words("a=1 b=2", "x86_64", (), ("irqpoll", "nr_cpus=1"), s)
    assert [w.text for w in got] == ["b=2", "nr_cpus=1", "irqpoll=x"]


def read_settings_from(files: dict[str, str]) -> CmdlineSettings:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for rel, text in files.items():
            _write(Path(d), rel, text)
        return read_settings(Host(Path(d)))


@pytest.mark.parametrize(("text", "words"), [
    ("KDUMP_COMMANDLINE_APPEND='a=x\"b\"'\n", "double quote"),
    ("KDUMP_COMMANDLINE='a\tb=\x01'\n", "control character"),
])
def test_words_pass_kernel_word(tmp_path: Path, text: str, words: str) -> None:
    _write(tmp_path, "/etc/sysconfig/kdump", text)
    with pytest.raises(UsageError, match=words) as ei:
        read_settings(Host(tmp_path))
    assert str(ei.value).startswith("/etc/sysconfig/kdump:1: ")


@pytest.fixture
def root(tmp_path: Path, vmlinuz: Path) -> Path:
    _write(tmp_path, "/proc/cmdline", f"BOOT_IMAGE=/boot/vmlinuz-{KVER} root=/dev/vda1 ro "
                                      "console=ttyS0 crashkernel=256M\n")
    _write(tmp_path, "/proc/sys/kernel/osrelease", KVER + "\n")
    _write(tmp_path, "/sys/kernel/kexec_crash_size", f"{256 * M}\n")
    _write(tmp_path, "/sys/kernel/kexec_crash_loaded", "0\n")
    (tmp_path / "boot").mkdir()
    shutil.copy(vmlinuz, tmp_path / f"boot/vmlinuz-{KVER}")
    _write(tmp_path, f"/boot/initramfs-{KVER}kdump.img", b"070701" + b"\0" * 4090)
    _write(tmp_path, "/etc/sysconfig/kdump", 'KDUMP_COMMANDLINE_APPEND="earlyprintk=ttyS0"\n'
                                             'KEXEC_ARGS="-s --elf64-core-headers"\n')
    return tmp_path


def test_dry_run_and_status_json_show_each_words_origin(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = CliRunner()
    res = r.invoke(main, ["load", "--root", str(root), "--arch", "x86_64", "--dry-run",
                          "-a", "foo=bar"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert any(ln.split() == ["earlyprintk=ttyS0", "/etc/sysconfig/kdump:1",
                              "KDUMP_COMMANDLINE_APPEND"] for ln in lines), res.stdout
    assert any(ln.split() == ["console=ttyS0", "/proc/cmdline"] for ln in lines)
    assert any(ln.split() == ["foo=bar", "--append"] for ln in lines)
    assert "note: /etc/sysconfig/kdump:2: KEXEC_ARGS: --elf64-core-headers not applied" \
        in res.stdout
    fake = FakeKexec(root)
    monkeypatch.setattr(live, "RUNNING", fake.kernel)
    res = r.invoke(main, ["load", "--root", str(root), "--arch", "x86_64"])
    assert res.exit_code == 0, res.output
    assert fake.calls[0].cmdline is not None and b"earlyprintk=ttyS0" in fake.calls[0].cmdline
    _write(root, "/sys/kernel/kexec_crash_loaded", "1\n")
    res = r.invoke(main, ["status", "--root", str(root), "--json"])
    doc = json.loads(res.stdout)
    assert {"word": "earlyprintk=ttyS0",
            "from": "/etc/sysconfig/kdump:1 KDUMP_COMMANDLINE_APPEND"} in doc["cmdline_words"]
    assert " ".join(w["word"] for w in doc["cmdline_words"]) == doc["cmdline"]
    res = r.invoke(main, ["status", "--root", str(root)])
    assert "  set by:     earlyprintk=ttyS0 (/etc/sysconfig/kdump:1 KDUMP_COMMANDLINE_APPEND)" \
        in res.stdout.splitlines()
    assert "/proc/cmdline" not in res.stdout


def test_service_uses_the_settings(root: Path) -> None:
    (root / "run").mkdir()
    said: list[str] = []
    svc = service.Service(machine=Host(root), arch=X86, kernel=None, echo=said.append,
                          warn=said.append)
    service.reload(svc)
    text = "\n".join(said)
    assert any(ln.split() == ["earlyprintk=ttyS0", "/etc/sysconfig/kdump:1",
                              "KDUMP_COMMANDLINE_APPEND"] for ln in text.splitlines()), text
    assert "KEXEC_ARGS: --elf64-core-headers not applied" in text


def test_a_broken_settings_file_is_a_config_error(root: Path) -> None:
    _write(root, "/etc/default/kdump-tools", "KDUMP_CMDLINE_APPEND=\"$(id)\"\n")
    res = CliRunner().invoke(main, ["load", "--root", str(root), "--arch", "x86_64", "-n"])
    assert res.exit_code == 2
    assert "/etc/default/kdump-tools:1: KDUMP_CMDLINE_APPEND: '$'" in res.output
    with pytest.raises(ConfigError):
        loader.plan_load(Host(root), X86)
