"""kdump.conf directives Fedora users rely on: dracut_args --mount, fence_kdump_nodes/args,
kdump_emergency (read, checked, written back by `config show`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.config import directives
from mkkdumprd.config.kdumpconf import ParseResult, parse_kdump_conf
from mkkdumprd.config.model import KdumpConfig, TargetKind
from mkkdumprd.config.render import render_kdump_conf
from mkkdumprd.errors import Location


def ok(text: str) -> KdumpConfig:
    result = parse_kdump_conf(text, "k.conf")
    assert result.errors == (), [str(e) for e in result.errors]
    assert result.config is not None
    return result.config


def bad(text: str) -> ParseResult:
    result = parse_kdump_conf(text, "k.conf")
    assert result.config is None and result.errors
    return result


UUID = "01234567-89ab-cdef-0123-456789abcdef"


@pytest.mark.parametrize(("line", "kind", "field", "value"), [
    (f'dracut_args --mount "UUID={UUID} /var/crash ext4 defaults"', TargetKind.LOCAL,
     "device", f"UUID={UUID}"),
    ("dracut_args --mount '/dev/vdb /mnt xfs'", TargetKind.LOCAL, "device", "/dev/vdb"),
    ('dracut_args --add-drivers virtio_blk --mount="srv:/export /mnt nfs4 defaults"',
     TargetKind.NFS, "server", "srv:/export"),
])
def test_dracut_mount_is_the_target(line: str, kind: TargetKind, field: str,
                                    value: str) -> None:
    config = ok(line + "\npath /dumps\n")
    assert config.target.kind is kind and getattr(config.target, field) == value
    assert config.target.where == Location("k.conf", 1)
    assert "target" in config.explicit and "dracut_args" in config.explicit
    assert config.location("target") == Location("k.conf", 1)
    shown = render_kdump_conf(config)
    # config show prints the modern equivalent: a target line, no --mount
    assert "--mount" not in shown
    modern = {"device": f"{config.target.fstype} {value}", "server": f"nfs {value}"}[field]
    assert modern in shown.splitlines()
    again = ok(shown)
    assert again.target == config.target.__class__(kind, device=config.target.device,
                                                   fstype=config.target.fstype,
                                                   server=config.target.server,
                                                   where=again.target.where)
    assert again.path == "/dumps"


def test_dracut_mount_keeps_drivers_and_warns_about_options() -> None:
    config = ok('dracut_args --mount "/dev/vdb /mnt ext4 noatime,rw" --add-drivers m\n')
    assert config.add_drivers == ("m",)
    (w,) = config.warnings
    assert "options noatime are not applied" in w.message
    assert "dracut_args --add-drivers m" in render_kdump_conf(config)


@pytest.mark.parametrize(("text", "words"), [
    ('ext4 /dev/vda1\ndracut_args --mount "/dev/vdb /mnt ext4"\n', "more than one dump target"),
    ('dracut_args --mount "/dev/vdb /mnt ext4"\nnfs h:/e\n', "more than one dump target"),
    ('dracut_args --mount "/dev/vdb /mnt ext4" --mount "/dev/vdc /m ext4"\n',
     "more than one --mount"),
    ('dracut_args --mount "h:/e /mnt nfs"\n', None),
    ('dracut_args --mount "nohost /mnt nfs"\n', "nfs device"),
    ('dracut_args --mount "rel/dev /mnt ext4"\n', "device"),
    ("dracut_args --mount\n", "needs a value"),
])
def test_dracut_mount_rules(text: str, words: str | None) -> None:
    if words is None:
        assert ok(text).target.kind is TargetKind.NFS
        return
    (err,) = bad(text).errors
    assert words in err.message


def test_fence_kdump_settings() -> None:
    config = ok("fence_kdump_nodes 192.0.2.7 node-b.example.com\n"
                "fence_kdump_args --ipport=7411 -f ipv4 -c 0 --interval 5 -v\n")
    assert config.fence_kdump_nodes == ("192.0.2.7", "node-b.example.com")
    assert config.fence_kdump_args == ("-p", "7411", "-f", "ipv4", "-c", "0", "-i", "5", "-v")
    assert config.warnings == ()
    shown = render_kdump_conf(config)
    assert "fence_kdump_nodes 192.0.2.7 node-b.example.com" in shown
    assert ok(shown).fence_kdump_args == config.fence_kdump_args
    rec = directives.record(config)
    assert rec["fence_kdump_nodes"] == ["192.0.2.7", "node-b.example.com"]
    # unset: not in the record, so older manifests compare equal
    assert "fence_kdump_nodes" not in directives.record(KdumpConfig())


@pytest.mark.parametrize(("args", "words"), [
    ("-x", "not a fence_kdump_send option"),
    ("-p", "needs a value"),
    ("-f ipv5", "must be one of auto, ipv4, ipv6"),
    ("-i 0", "seconds from 1"),
    ("-c many", "must be a number"),
    ("--verbose=1", "takes no value"),
    ("node1", "the nodes go in fence_kdump_nodes"),
])
def test_fence_kdump_args_are_checked(args: str, words: str) -> None:
    errs = bad(f"fence_kdump_nodes n\nfence_kdump_args {args}\n").errors
    assert any(words in e.message for e in errs), [e.message for e in errs]


def test_kdump_emergency_is_read() -> None:
    config = ok("kdump_emergency /usr/local/bin/on-error\n")
    assert config.kdump_emergency == "/usr/local/bin/on-error" and config.warnings == ()
    assert "kdump_emergency /usr/local/bin/on-error" in render_kdump_conf(config)
    assert "absolute" in bad("kdump_emergency relative\n").errors[0].message


def test_config_check_no_longer_says_ignored(tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text("ext4 /dev/vda1\nfence_kdump_nodes 192.0.2.7\nfence_kdump_args -p 7410\n"
                    "kdump_emergency /usr/local/bin/x\n")
    res = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert res.exit_code == 0, res.output
    assert "ignored" not in res.output and "not supported" not in res.output
    conf.write_text('dracut_args --mount "/dev/vdb /mnt ext4 defaults"\n')
    res = CliRunner().invoke(main, ["config", "show", "-c", str(conf)])
    assert res.exit_code == 0, res.output
    assert "ext4 /dev/vdb" in res.output.splitlines()
