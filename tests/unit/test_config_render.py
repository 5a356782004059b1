"""`config show` text and the JSON form of a config."""

from __future__ import annotations

import pytest

from mkkdumprd.config.kdumpconf import parse_kdump_conf
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.config.render import (
    config_as_dict,
    quote_value,
    render_kdump_conf,
    target_as_dict,
)
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
