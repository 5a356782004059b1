"""The directive table (config/directives.py) and everything derived from it: the parser's
dispatch, `config show`, the JSON record, freshness, module conditions and --help."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mkkdumprd.assemble import moduledef
from mkkdumprd.assemble.manifest import config_record
from mkkdumprd.assemble.resolver import conditions as resolver_conditions
from mkkdumprd.cli import main
from mkkdumprd.config import directives
from mkkdumprd.config.directives import DIRECTIVES, RECORDED_WHEN_SET, SETTINGS, Directive
from mkkdumprd.config.kdumpconf import KNOWN, parse_kdump_conf
from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.config.render import capture_conf, config_as_dict, render_kdump_conf
from mkkdumprd.errors import Location

# KdumpConfig fields that say where a config came from, not what it sets.
PROVENANCE = {"source", "warnings", "explicit", "locations"}


class Collect:
    def __init__(self) -> None:
        self.where = Location("t.conf", 1)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def _examples() -> list[tuple[Directive, str]]:
    return [(d, e) for d in DIRECTIVES for e in d.examples]


def _id(case: tuple[Directive, str]) -> str:
    return case[1].split(" ", 1)[0]


@pytest.mark.parametrize("case", _examples(), ids=_id)
def test_every_example_parses_and_sets_only_its_rows_fields(case: tuple[Directive, str]) -> None:
    row, line = case
    spelling, value = line.split(" ", 1)
    assert spelling in row.spellings
    result = parse_kdump_conf(line + "\n", "t.conf")
    assert result.config is not None, [str(e) for e in result.errors]
    if row.fields:
        assert result.config.explicit == {row.key}
        assert result.config.location(row.key) == Location("t.conf", 1)
    else:
        assert result.config.explicit == frozenset()
        assert [w.message for w in result.warnings] == [row.ignored]
    if row.parse is not None:
        report = Collect()
        fields = row.parse(report, spelling, value)
        assert report.errors == [] and fields is not None
        assert set(fields) <= set(row.fields)


def test_every_spelling_has_an_example_and_the_dispatch_knows_it() -> None:
    for row in DIRECTIVES:
        for spelling in row.spellings:
            assert spelling in directives.BY_SPELLING
            if spelling not in row.obsolete:
                assert row.example(spelling).split(" ", 1)[0] == spelling
    assert set(KNOWN) == {s for d in DIRECTIVES for s in d.spellings}
    assert len(KNOWN) == sum(len(d.spellings) for d in DIRECTIVES)  # no spelling twice


def test_every_model_field_is_set_by_exactly_one_row() -> None:
    owners: dict[str, list[str]] = {}
    for row in DIRECTIVES:
        for name in row.fields:
            owners.setdefault(name, []).append(row.key)
    model = {f.name for f in dataclasses.fields(KdumpConfig)} - PROVENANCE
    assert set(owners) == model
    assert {name: keys for name, keys in owners.items() if len(keys) > 1} == {}


def test_rows_are_complete() -> None:
    keys = [d.key for d in DIRECTIVES]
    assert len(keys) == len(set(keys))
    for row in DIRECTIVES:
        assert row.doc and row.examples
        if row.fields:
            assert row.parse is not None and row.write is not None and row.record is not None
            assert row.ignored is None
        else:
            assert row.parse is None and row.ignored and not row.in_image
            assert not row.when and not row.capture


def test_freshness_compares_exactly_the_rows_that_change_the_image() -> None:
    def keys(rows: list[Directive]) -> set[str]:
        out: set[str] = set()
        for row in rows:
            assert row.record is not None
            out |= set(row.record(KdumpConfig()))
        return out

    in_image = keys([d for d in SETTINGS if d.in_image])
    not_in_image = keys([d for d in SETTINGS if not d.in_image])
    assert set(config_record(KdumpConfig())) == in_image
    assert set(directives.NOT_IN_IMAGE) == not_in_image
    assert not_in_image == {"force_rebuild", "force_no_rebuild", "auto_reset_crashkernel"}


@pytest.mark.parametrize("line", ["force_rebuild 1", "auto_reset_crashkernel no"])
def test_a_setting_outside_the_image_leaves_the_record_alone(line: str) -> None:
    config = parse_kdump_conf(line + "\n").config
    assert config is not None
    assert config_record(config) == config_record(KdumpConfig())


@pytest.mark.parametrize("line", ["path /srv/crash", "final_action halt",
                                  "dracut_args --add-drivers virtio_net",
                                  "sshkey /root/.ssh/other"])
def test_a_setting_in_the_image_changes_the_record(line: str) -> None:
    config = parse_kdump_conf(line + "\n").config
    assert config is not None
    assert config_record(config) != config_record(KdumpConfig())


def test_json_record_keeps_the_manifest_key_order() -> None:
    # The manifest inside every image holds this dict: its key order is part of the image.
    assert list(config_as_dict(KdumpConfig())) == [
        "source", "target", "path", "core_collector", "kdump_pre", "kdump_post", "extra_bins",
        "extra_modules", "failure_action", "final_action", "force_rebuild",
        "force_no_rebuild", "add_drivers", "omit_drivers", "sshkey", "auto_reset_crashkernel",
        "hook_timeout", "netconsole", "defaults"]
    # dump_policy and keep_dumps record nothing at their defaults, so the manifest of an
    # image built before they existed reads the same (no rebuild, tests/unit/test_image_pin)
    assert config_as_dict(KdumpConfig())["defaults"] == sorted(
        d.key for d in SETTINGS if d.key not in RECORDED_WHEN_SET)


# One line per `when.config` condition that makes exactly that condition hold.
WHEN_LINES = {
    "kdump_pre": "kdump_pre /x",
    "kdump_post": "kdump_post /x",
    "extra_bins": "extra_bins lsblk",
    "extra_modules": "extra_modules virtio_net",
    "failure_action_shell": "failure_action shell",
    "failure_action_dump_to_rootfs": "failure_action dump_to_rootfs",
    "fence_kdump": "fence_kdump_nodes 192.0.2.7",
    "kdump_emergency": "kdump_emergency /x",
    "netconsole": "netconsole 10.0.0.1",
}


@pytest.mark.parametrize(("value", "stored"), [("10.0.0.1", "10.0.0.1:6666"),
                                               ("loghost.example:514", "loghost.example:514")])
def test_netconsole_values(value: str, stored: str) -> None:
    config = parse_kdump_conf(f"netconsole {value}\n").config
    assert config is not None and config.netconsole == stored


@pytest.mark.parametrize("value", ["10.0.0.1:0", "10.0.0.1:65536", "::1", "[::1]:6666",
                                   "bad host:1", "10.0.0.1:x", ":6666"])
def test_netconsole_errors(value: str) -> None:
    result = parse_kdump_conf(f"netconsole {value}\n")
    assert result.config is None and "netconsole" in str(result.errors[0])


def test_module_conditions_come_from_the_table() -> None:
    assert set(WHEN_LINES) == directives.WHEN_KEYS
    assert resolver_conditions(KdumpConfig()) == frozenset()
    for key, line in WHEN_LINES.items():
        config = parse_kdump_conf(line + "\n").config
        assert config is not None
        assert resolver_conditions(config) == {key}, line


def test_module_toml_accepts_exactly_the_table_conditions(tmp_path: Path) -> None:
    def load(key: str) -> moduledef.ModuleDef:
        name = key.replace("_", "-")
        d = tmp_path / name
        d.mkdir()
        (d / "module.toml").write_text(
            f'name = "{name}"\ndescription = "x"\nwhen = {{ config = ["{key}"] }}\n')
        return moduledef.load_module(d)

    for key in directives.WHEN_KEYS:
        assert load(key).when.config == {key}
    with pytest.raises(moduledef.ModuleDefError) as err:
        load("bogus")
    for key in directives.WHEN_KEYS:
        assert key in str(err.value)


def test_show_writes_every_setting_and_capture_only_its_targets() -> None:
    config = KdumpConfig()
    shown = render_kdump_conf(config).splitlines()
    for row in SETTINGS:
        assert row.write is not None
        line = row.write(config)
        expect = row.unset(config) if line is None else line + "  # default"
        assert expect in shown, row.key
    for row in SETTINGS:
        for kind in row.capture:
            text = capture_conf(config, kind, device="/dev/vdb", fstype="ext4",
                                server="u@h" if kind.value == "ssh" else "h:/e", path="/p")
            words = {line.split(" ", 1)[0] for line in text.splitlines()}
            if row.key != "target" and row.write is not None and row.write(config):
                assert row.key in words, (row.key, kind)


def test_help_lists_every_directive_with_its_doc() -> None:
    out = CliRunner().invoke(main, ["config", "--help"]).output
    flat = " ".join(out.split())
    for row in DIRECTIVES:
        assert row.key in out or row.spellings[0] in out
        assert " ".join(row.doc.split()) in flat


def _record_of(line: str) -> dict[str, Any]:
    config = parse_kdump_conf(line + "\n").config
    assert config is not None
    return config_as_dict(config)


def test_obsolete_spelling_sets_the_same_key() -> None:
    result = parse_kdump_conf("default shell\n")
    assert result.config is not None and result.config.explicit == {"failure_action"}
    assert "obsolete" in result.warnings[0].message
    assert _record_of("default shell") == _record_of("failure_action shell")
    both = parse_kdump_conf("default shell\nfailure_action halt\n")
    assert both.config is None
    assert "'failure_action' sets failure_action again" in both.errors[0].message
