"""`--target SPEC`: every accepted and rejected form, and how it overrides kdump.conf."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mkkdumprd.config.kdumpconf import load_kdump_conf, parse_kdump_conf
from mkkdumprd.config.model import DEFAULT_COLLECTOR, KdumpConfig, Target, TargetKind
from mkkdumprd.config.target_spec import apply_target, parse_target_spec
from mkkdumprd.errors import ConfigError, Location, UsageError

UUID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
L, R, N, S = TargetKind.LOCAL, TargetKind.RAW, TargetKind.NFS, TargetKind.SSH


@pytest.mark.parametrize("spec,target,path", [
    ("local", Target(L), None),
    ("local:/dev/vdb1", Target(L, device="/dev/vdb1"), None),
    (f"local:UUID={UUID}:/var/crash", Target(L, device=f"UUID={UUID}"), "/var/crash"),
    ("local:LABEL=dump:/crash", Target(L, device="LABEL=dump"), "/crash"),
    ("local:/dev/disk/by-path/pci-0000:00:1f.2-ata-1:/x",
     Target(L, device="/dev/disk/by-path/pci-0000:00:1f.2-ata-1"), "/x"),
    ("local:/var/crash", Target(L), "/var/crash"),
    ("local::/var/crash", Target(L), "/var/crash"),
    ("ext4:/dev/vda", Target(L, device="/dev/vda", fstype="ext4"), None),
    (f"xfs:PARTUUID={UUID}:/d", Target(L, device=f"PARTUUID={UUID}", fstype="xfs"), "/d"),
    ("raw:/dev/vdb", Target(R, device="/dev/vdb"), None),
    ("raw:PARTUUID=1234abcd-02", Target(R, device="PARTUUID=1234abcd-02"), None),
    ("nfs", Target(N), None),
    ("nfs:server:/export", Target(N, server="server:/export"), None),
    ("nfs:server:/export/", Target(N, server="server:/export"), None),
    ("nfs:server:/export/sub/dir", Target(N, server="server:/export"), "/sub/dir"),
    ("nfs:server:/srv/nfs:/crash", Target(N, server="server:/srv/nfs"), "/crash"),
    ("nfs:10.0.2.2:/", Target(N, server="10.0.2.2:/"), None),
    ("nfs:[2001:db8::1]:/export/crash", Target(N, server="[2001:db8::1]:/export"), "/crash"),
    ("nfs4:h:/e", Target(N, server="h:/e"), None),
    ("ssh", Target(S), None),
    ("ssh:root@host", Target(S, server="root@host"), None),
    ("ssh:root@host:/var/crash", Target(S, server="root@host"), "/var/crash"),
    ("ssh:root@2001:db8::1:/var/crash", Target(S, server="root@2001:db8::1"), "/var/crash"),
    ("ssh:root@[2001:db8::1]:/d", Target(S, server="root@2001:db8::1"), "/d"),
])
def test_accepted_specs(spec: str, target: Target, path: str | None) -> None:
    assert parse_target_spec(spec) == (target, path)


@pytest.mark.parametrize("spec,why", [
    ("", "unknown target type"),
    ("disk:/dev/vdb", "unknown target type"),
    ("LOCAL", "unknown target type"),
    ("local:vdb", "is not a device"),
    ("local:/dev/vdb:var/crash", "must be absolute"),
    ("local:/dev/vdb:/a#b", "'#'"),
    ("local::rel", "must be absolute"),
    ("ext4", "needs a device"),
    ("ext4:/var/crash", "is not a device"),
    ("raw", "needs a device"),
    ("raw:/dev/vdb:/var/crash", "takes no path"),
    ("raw:UUID=zz", "not a valid UUID"),
    ("nfs:server", "SERVER:/EXPORT"),
    ("nfs:server:export", "SERVER:/EXPORT"),
    ("nfs:[2001:db8::1:/x", "without ']'"),
    ("nfs:bad host:/x", "host name"),
    ("nfs:h:/e:rel", "must be absolute"),
    ("ssh:host", "no user"),
    ("ssh:root@", "no host"),
    ("ssh:root@h:rel", "must be absolute"),
    ("local:/dev/vdb:/../..", "'..'"),
    ("nfs:h:/e:/var/../../x", "'..'"),
    ("ssh:root@2001:db8:::1", "IPv6"),
    ("ssh:root@host\n", "control character"),
    ("local:/dev/vd\x00b", "NUL"),
])
def test_rejected_specs_list_the_accepted_forms(spec: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_target_spec(spec)
    assert why in str(info.value)
    assert "raw:DEVICE" in str(info.value) and "ssh[:USER@HOST[:PATH]]" in str(info.value)


def parsed(text: str) -> KdumpConfig:
    config = parse_kdump_conf(text, "k.conf").config
    assert config is not None
    return config


def test_apply_replaces_target_and_path() -> None:
    config = parsed("ext4 /dev/vdb\npath /var/crash\n")
    out = apply_target(config, *parse_target_spec("nfs:srv:/export/dumps"))
    assert out.target == Target(N, server="srv:/export")
    assert out.path == "/dumps"
    assert out.location("target") is None and out.location("path") is None
    assert {"target", "path"} <= out.explicit


def test_apply_without_path_keeps_the_files_path() -> None:
    out = apply_target(parsed("path /srv/x\n"), *parse_target_spec("raw:/dev/vdb"))
    assert out.path == "/srv/x"


@pytest.mark.parametrize("spec,text", [
    ("nfs", "nfs h:/e\n"), ("ssh", "ssh u@h\n"), ("local", "xfs LABEL=d\n"),
])
def test_bare_kind_keeps_the_files_target(spec: str, text: str) -> None:
    config = parsed(text)
    assert apply_target(config, *parse_target_spec(spec)).target == config.target


@pytest.mark.parametrize("spec", ["nfs", "ssh"])
def test_bare_remote_kind_without_one_in_the_file_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError, match="needs"):
        apply_target(parsed("ext4 /dev/vdb\n"), *parse_target_spec(spec))


def test_bare_local_over_a_remote_target_means_filesystem_of_path() -> None:
    out = apply_target(parsed("nfs h:/e\n"), *parse_target_spec("local"))
    assert out.target == Target(L)


def test_default_collector_is_derived_again_for_the_new_target() -> None:
    config = parsed("ext4 /dev/vdb\n")
    assert config.core_collector == DEFAULT_COLLECTOR
    raw = apply_target(config, *parse_target_spec("raw:/dev/vdc"))
    assert raw.core_collector[:2] == ("makedumpfile", "-F")
    back = apply_target(raw, *parse_target_spec("local:/dev/vdb"))
    assert back.core_collector == DEFAULT_COLLECTOR


def test_flat_rule_is_checked_again_for_the_cli_target() -> None:
    config = parsed("ext4 /dev/vdb\ncore_collector makedumpfile -l -d 31\n")
    with pytest.raises(ConfigError) as info:
        apply_target(config, *parse_target_spec("ssh:root@host"))
    (where, message), = info.value.problems
    assert where == Location("k.conf", 2) and "lacks -F" in message


def test_written_flat_flag_survives_a_detour_through_a_filesystem_target() -> None:
    config = parsed("raw /dev/vdb\ncore_collector makedumpfile -F -l\n")
    local = apply_target(config, *parse_target_spec("ext4:/dev/vdc"))
    assert local.core_collector == ("makedumpfile", "-l")
    assert any("dropped" in w.message for w in local.warnings)
    again = apply_target(local, *parse_target_spec("ssh:u@h"))
    assert again.core_collector == ("makedumpfile", "-F", "-l")
    assert not any("dropped" in w.message for w in again.warnings)


def test_target_dependent_warnings_are_recomputed_and_others_kept() -> None:
    config = parsed("raw /dev/vdb\npath /p\ndefault halt\n")
    assert len(config.warnings) == 2  # path ignored for raw, obsolete default
    out = apply_target(config, *parse_target_spec("local"))
    assert [w.where.line for w in out.warnings if w.where] == [3]


def test_bare_network_target_without_a_file_target_says_what_is_missing(tmp_path: Path) -> None:
    expected = "needs SERVER:/EXPORT because no kdump.conf was read"
    with pytest.raises(UsageError, match=re.escape(expected)):
        apply_target(KdumpConfig(), *parse_target_spec("nfs"))
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /var/crash\n")
    cfg = load_kdump_conf(conf)
    expected = f"needs USER@HOST because {conf} has no ssh target"
    with pytest.raises(UsageError, match=re.escape(expected)):
        apply_target(cfg, *parse_target_spec("ssh"))
