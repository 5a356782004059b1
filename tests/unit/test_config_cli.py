"""`mkkdumprd config check|show` through click's test runner."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from mkkdumprd.cli import main
from mkkdumprd.config.kdumpconf import parse_kdump_conf


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def write(tmp_path: Path, text: str | bytes) -> Path:
    conf = tmp_path / "kdump.conf"
    if isinstance(text, bytes):
        conf.write_bytes(text)
    else:
        conf.write_text(text, encoding="utf-8")
    return conf


def test_check_valid_file_exits_0_and_warns_on_stderr_with_line(tmp_path: Path) -> None:
    conf = write(tmp_path, "path /srv/crash\r\n\tdefault shell # obsolete\r\n")
    result = run("config", "check", "-c", str(conf))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{conf}: valid\n"
    assert f"{conf}:2: warning: 'default' is obsolete" in result.stderr


def test_check_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    conf = write(tmp_path, "raw /dev/vdb\ncore_collector makedumpfile -l\nnfs h:/e\n"
                           "link_delay 10\nfinal_action shell\nunknown x\n")
    result = run("config", "check", "-c", str(conf))
    assert result.exit_code == 2
    errors = [ln for ln in result.stderr.splitlines() if ": error: " in ln]
    assert [ln.split(":")[1] for ln in errors] == ["2", "3", "4", "5", "6"]
    assert "lacks -F" in errors[0] and "more than one dump target" in errors[1]
    assert "5 errors" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_check_json_valid(tmp_path: Path) -> None:
    conf = write(tmp_path, 'nfs srv:/export\ncore_collector "makedumpfile -l -d 31"\n'
                           "dracut_args --add-drivers nfsv4 --hostonly\n")
    result = run("config", "check", "-c", str(conf), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["valid"] is True and doc["errors"] == []
    config = doc["config"]
    assert config["target"] == {"type": "nfs", "server": "srv:/export", "host": "srv",
                                "export": "/export"}
    assert config["core_collector"] == ["makedumpfile", "-l", "-d", "31"]
    assert config["add_drivers"] == ["nfsv4"]
    assert config["path"] == "/var/crash" and "path" in config["defaults"]
    (warning,) = doc["warnings"]
    assert warning["file"] == str(conf) and warning["line"] == 3
    assert warning["text"] == "dracut_args --add-drivers nfsv4 --hostonly"


def test_check_json_invalid_still_prints_json_and_exits_2(tmp_path: Path) -> None:
    conf = write(tmp_path, "path relative\nssh root@[::1]\n")
    result = run("config", "check", "-c", str(conf), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["config"] is None
    assert [(e["line"], e["text"]) for e in doc["errors"]] == [
        (1, "path relative"), (2, "ssh root@[::1]")]
    assert "without brackets" in doc["errors"][1]["message"]


def test_check_invalid_utf8_and_nul_give_errors_not_tracebacks(tmp_path: Path) -> None:
    conf = write(tmp_path, b"path /var/\xffcrash\nfinal_action\x00 halt\n")
    result = run("config", "check", "-c", str(conf), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert [e["line"] for e in doc["errors"]] == [1, 2]
    assert "\ufffd" in doc["errors"][0]["text"]


def test_check_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run("config", "check", "-c", str(tmp_path / "nope.conf"))
    assert result.exit_code == 2 and "cannot read" in result.stderr
    doc = json.loads(run("config", "check", "-c", str(tmp_path / "nope"), "--json").stdout)
    assert doc["errors"][0]["line"] is None


def test_check_with_cli_target_rechecks_the_flat_rule(tmp_path: Path) -> None:
    conf = write(tmp_path, "core_collector makedumpfile -l -d 31\n")
    assert run("config", "check", "-c", str(conf)).exit_code == 0
    result = run("config", "check", "-c", str(conf), "--target", "raw:/dev/vdb")
    assert result.exit_code == 2
    assert f"{conf}:1: error:" in result.stderr and "lacks -F" in result.stderr


def test_check_bad_target_spec_is_exit_2_with_forms(tmp_path: Path) -> None:
    conf = write(tmp_path, "")
    result = run("config", "check", "-c", str(conf), "--target", "floppy:/dev/fd0")
    assert result.exit_code == 2 and "accepted forms" in result.stderr
    doc = json.loads(run("config", "check", "-c", str(conf), "--target", "nfs:x",
                         "--json").stdout)
    assert doc["valid"] is False and "SERVER:/EXPORT" in doc["errors"][0]["message"]


def test_show_fills_defaults_and_parses_back(tmp_path: Path) -> None:
    conf = write(tmp_path, 'ssh kdump@10.0.2.2\npath "/dump dir/ "\n'
                           "core_collector makedumpfile -F -l '$(reboot)'\n")
    result = run("config", "show", "-c", str(conf))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "ssh kdump@10.0.2.2\n" in out
    assert 'path "/dump dir/ "\n' in out
    assert "failure_action reboot  # default\n" in out
    original = parse_kdump_conf(conf.read_text()).config
    again = parse_kdump_conf(out).config
    assert original is not None and again is not None
    assert (again.path, again.core_collector, again.target.server) == (
        original.path, original.core_collector, original.target.server)


def test_show_with_target_override(tmp_path: Path) -> None:
    conf = write(tmp_path, "ext4 /dev/vdb\n")
    result = run("config", "show", "-c", str(conf), "--target", "nfs:srv:/export/crash")
    assert result.exit_code == 0
    assert "nfs srv:/export\n" in result.stdout and "path /crash\n" in result.stdout


def test_show_invalid_file_exits_2_with_errors(tmp_path: Path) -> None:
    conf = write(tmp_path, "path x\n")
    result = run("config", "show", "-c", str(conf))
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{conf}:1: error: path must be an absolute path" in result.stderr


@pytest.mark.parametrize("cmd", ["check", "show"])
def test_help_documents_the_target_forms(cmd: str) -> None:
    result = run("config", cmd, "--help")
    assert result.exit_code == 0
    assert "nfs[:SERVER:/EXPORT[/PATH]]" in result.stdout


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), spec=st.one_of(st.none(), st.text(max_size=20)))
def test_check_never_tracebacks_on_any_file_or_spec(data: bytes, spec: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "kdump.conf"
        conf.write_bytes(data)
        args = ["config", "check", "-c", str(conf), "--json"]
        if spec is not None:
            args += ["--target", spec]
        result = CliRunner().invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code in (0, 2)
        doc = json.loads(result.stdout)
        assert doc["valid"] is (result.exit_code == 0)
