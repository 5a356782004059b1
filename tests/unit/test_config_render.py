"""`config show` text and the JSON form of a config."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.config.kdumpconf import parse_kdump_conf
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.config.render import (
    capture_conf,
    config_as_dict,
    render_kdump_conf,
    target_as_dict,
)
from mkkdumprd.config.syntax import quote_value
from mkkdumprd.errors import UsageError


def parsed(text: str) -> KdumpConfig:
    config = parse_kdump_conf(text, "k.conf").config
    assert config is not None
    return config


@pytest.mark.parametrize("value,written", [
    ("/var/crash", "/var/crash"),
    ("/a b", "/a b"),
    ("/a ", '"/a "'),
    ("\t/a", '"\t/a"'),
    ('"x"', '""x""'),
    ('"x', '"x'),
    ('"', '"'),
    ("/$(id);`x`'", "/$(id);`x`'"),
])
def test_quote_value(value: str, written: str) -> None:
    assert quote_value(value) == written
    if value.startswith("/"):
        assert parsed(f"kdump_pre {written}\n").kdump_pre == value


@pytest.mark.parametrize("value", ["/a#b", "/a\nb", "/a\x00", "/a\rb"])
def test_unwritable_values_are_refused(value: str) -> None:
    with pytest.raises(UsageError):
        quote_value(value)


def test_defaults_are_marked_and_explicit_lines_are_not() -> None:
    text = render_kdump_conf(parsed("xfs LABEL=dump\nfinal_action halt\n"))
    lines = text.splitlines()
    assert "xfs LABEL=dump" in lines
    assert "final_action halt" in lines
    assert "failure_action reboot  # default" in lines
    assert "path /var/crash  # default" in lines
    assert "core_collector makedumpfile -l --message-level 7 -d 31  # default" in lines
    assert "sshkey /root/.ssh/kdump_id_rsa  # default" in lines
    assert "force_rebuild 0  # default" in lines
    assert "auto_reset_crashkernel yes  # default" in lines
    assert "# kdump_pre: none" in lines


def test_raw_default_collector_shows_the_flat_flag() -> None:
    text = render_kdump_conf(parsed("raw /dev/vdb\n"))
    assert "core_collector makedumpfile -F -l --message-level 7 -d 31  # default" in text


def test_word_lists_are_shell_quoted() -> None:
    config = parsed("core_collector makedumpfile -F 'a b' '$(x)'\nssh u@h\n"
                    'dracut_args --add-drivers "x y" --omit-drivers z\n'
                    "extra_bins '/opt/my tool' ls\n")
    text = render_kdump_conf(config)
    assert "core_collector makedumpfile -F 'a b' '$(x)'" in text
    assert "dracut_args --add-drivers 'x y' --omit-drivers z" in text
    assert "extra_bins '/opt/my tool' ls" in text


def test_local_target_without_type_is_a_comment() -> None:
    config = KdumpConfig(target=Target(TargetKind.LOCAL, device="/dev/vdb"))
    assert "# target: local device /dev/vdb" in render_kdump_conf(config)
    assert "# target: the filesystem that holds path" in render_kdump_conf(KdumpConfig())


@pytest.mark.parametrize("text,expected", [
    ("ext4 UUID=0a1b2c3d-4e5f-6789-abcd-ef0123456789",
     {"type": "local", "fstype": "ext4", "device": "UUID=0a1b2c3d-4e5f-6789-abcd-ef0123456789"}),
    ("raw /dev/vdb", {"type": "raw", "device": "/dev/vdb"}),
    ("nfs [2001:db8::1]:/export", {"type": "nfs", "server": "[2001:db8::1]:/export",
                                   "host": "2001:db8::1", "export": "/export"}),
    ("ssh kdump@h.example", {"type": "ssh", "server": "kdump@h.example", "user": "kdump",
                             "host": "h.example"}),
    ("", {"type": "local", "fstype": None, "device": None}),
])
def test_target_as_dict(text: str, expected: dict[str, str]) -> None:
    assert target_as_dict(parsed(text + "\n").target) == expected


def test_config_as_dict() -> None:
    data = config_as_dict(parsed("ssh u@h\nextra_modules a b\nfailure_action shell\n"))
    assert data["core_collector"] == ["makedumpfile", "-F", "-l", "--message-level", "7",
                                      "-d", "31"]
    assert data["extra_modules"] == ["a", "b"]
    assert data["failure_action"] == "shell" and data["final_action"] == "reboot"
    assert "failure_action" not in data["defaults"] and "path" in data["defaults"]
    assert set(data) >= {"target", "path", "kdump_pre", "kdump_post", "extra_bins",
                         "force_rebuild", "force_no_rebuild", "add_drivers", "omit_drivers",
                         "sshkey"}


def test_image_kdump_conf_keeps_the_quoting(tmp_path: Path) -> None:
    config = parsed("ext4 LABEL=dump\n"
                    "extra_bins '/opt/my tool' \"x;y\" '$(x)'\n"
                    'kdump_pre "/usr/bin/pre "\n'
                    "core_collector makedumpfile -l -d 31 --message-level '7'\n")
    text = capture_conf(config, TargetKind.LOCAL, device="LABEL=dump", fstype="ext4",
                        server=None, path="/crash dir ")
    lines = text.splitlines()
    assert "extra_bins '/opt/my tool' 'x;y' '$(x)'" in lines
    assert 'kdump_pre "/usr/bin/pre "' in lines
    assert 'path "/crash dir "' in lines
    assert "core_collector makedumpfile -l -d 31 --message-level 7" in lines
    conf = tmp_path / "kdump.conf"
    conf.write_text(text)
    result = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert result.exit_code == 0, result.output
    again = parsed(text)
    assert again.extra_bins == ("/opt/my tool", "x;y", "$(x)")
    assert again.kdump_pre == "/usr/bin/pre " and again.path == "/crash dir "


@pytest.mark.parametrize("conf,kind,device,fstype,server,path,expected", [
    ("", TargetKind.LOCAL, "UUID=12345678-1234-1234-1234-123456789abc", "ext4", None, "/crash",
     "# resolved by mkkdumprd from k.conf\next4 UUID=12345678-1234-1234-1234-123456789abc\n"
     "path /crash\ncore_collector makedumpfile -l --message-level 7 -d 31\n"
     "failure_action reboot\nfinal_action reboot\n"),
    ("raw /dev/vdb\nextra_modules a b\nfinal_action halt\n", TargetKind.RAW, "/dev/vdb", None,
     None, "/var/crash",
     "# resolved by mkkdumprd from k.conf\nraw /dev/vdb\n"
     "core_collector makedumpfile -F -l --message-level 7 -d 31\nextra_modules a b\n"
     "failure_action reboot\nfinal_action halt\n"),
    ("ssh u@h\nsshkey /k\nkdump_pre /a\nkdump_post /b\nextra_bins ls /bin/x\n"
     "failure_action shell\nforce_rebuild 1\ndracut_args --add-drivers m\n", TargetKind.SSH,
     None, None, "u@h", "/var/crash",
     "# resolved by mkkdumprd from k.conf\nssh u@h\npath /var/crash\n"
     "core_collector makedumpfile -F -l --message-level 7 -d 31\nsshkey /k\nkdump_pre /a\n"
     "kdump_post /b\nextra_bins ls /bin/x\nfailure_action shell\nfinal_action reboot\n"),
    ("ext4 /dev/vdb\n", TargetKind.LOCAL, "/dev/vdb", None, None, "/var/crash",
     "# resolved by mkkdumprd from k.conf\n# filesystem type unknown; device /dev/vdb\n"
     "path /var/crash\ncore_collector makedumpfile -l --message-level 7 -d 31\n"
     "failure_action reboot\nfinal_action reboot\n"),
])
def test_image_kdump_conf_is_unchanged_where_nothing_needs_quoting(
        conf: str, kind: TargetKind, device: str | None, fstype: str | None,
        server: str | None, path: str, expected: str) -> None:
    # Byte for byte what earlier versions wrote: the image's bytes must not change.
    assert capture_conf(parsed(conf), kind, device=device, fstype=fstype, server=server,
                        path=path) == expected


@pytest.mark.parametrize("path", ["/a#b", "/a\nb"])
def test_image_kdump_conf_refuses_a_value_it_cannot_write(path: str) -> None:
    # A resolved path from the host (through a symlink) is not checked by the parser.
    with pytest.raises(UsageError, match=r"cannot be written in kdump\.conf syntax"):
        capture_conf(KdumpConfig(), TargetKind.LOCAL, device="/dev/vdb", fstype="ext4",
                     server=None, path=path)
