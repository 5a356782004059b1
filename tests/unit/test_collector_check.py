"""core_collector options judged by the makedumpfile that runs them (the real one here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mkkdumprd.assemble.collector_check import (
    VMCORE,
    check_options,
    collector_problems,
    probe_argv,
)
from mkkdumprd.config.kdumpconf import parse_kdump_conf
from mkkdumprd.config.model import KdumpConfig

MAKEDUMPFILE = shutil.which("makedumpfile")
real = pytest.mark.skipif(MAKEDUMPFILE is None, reason="needs makedumpfile (dev/setup)")


def _config(text: str) -> KdumpConfig:
    result = parse_kdump_conf(text, "k.conf")
    assert result.config is not None, result.errors
    return result.config


@real
@pytest.mark.parametrize(("options", "streamed", "why"), [
    ("-l --bogus -d 31", False, "unrecognized option '--bogus'"),
    ("-l -d 99", False, "Dump_level(99) is invalid"),
    ("-l -d 31 -Q", True, "invalid option -- 'Q'"),
    ("-l -d", False, "Commandline parameter is invalid"),
])
def test_rejected_options_are_named(options: str, streamed: bool, why: str) -> None:
    argv = ["makedumpfile", *(["-F"] if streamed else []), *options.split()]
    verdict = check_options(Path(str(MAKEDUMPFILE)), argv, streamed=streamed)
    assert not verdict.accepted and not verdict.unknown
    assert why in verdict.message


@real
@pytest.mark.parametrize("options", ["-l --message-level 1 -d 31", "-c -d 17", "-p -d 31",
                                     "--num-threads 2 -d 31"])
def test_accepted_options(options: str) -> None:
    verdict = check_options(Path(str(MAKEDUMPFILE)), ["makedumpfile", *options.split()],
                            streamed=False)
    assert verdict.accepted, verdict


def test_message_level_is_raised_for_the_probe_only() -> None:
    argv = probe_argv(Path("/m"), ["makedumpfile", "-l", "--message-level", "1", "-d", "31",
                                   "--message-level=4"], streamed=True)
    assert argv == ["/m", "--message-level", "31", "-l", "-d", "31", VMCORE]


def test_a_binary_that_does_not_answer_like_makedumpfile_is_not_judged() -> None:
    verdict = check_options(Path("/bin/true"), ["makedumpfile", "--bogus"], streamed=False)
    assert verdict.unknown and "not checked" in verdict.message


def test_a_binary_that_cannot_run_is_not_judged(tmp_path: Path) -> None:
    verdict = check_options(tmp_path / "none", ["makedumpfile"], streamed=False)
    assert verdict.unknown and "cannot run" in verdict.message


@real
def test_every_variant_the_image_runs_is_checked() -> None:
    seen: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str]:
        seen.append(argv)
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        return r.returncode, r.stdout

    config = _config("raw /dev/vdb\ncore_collector makedumpfile -F -l -d 31\n"
                     "failure_action dump_to_rootfs\n")
    errors, warnings = collector_problems(config, Path(str(MAKEDUMPFILE)), run)
    assert errors == [] and warnings == []
    probes = [a for a in seen if "-l" in a]
    assert any("-F" in a and a[-1] == VMCORE for a in probes)        # the raw stream
    assert any("-F" not in a and a[-2] == VMCORE for a in probes)    # dump_to_rootfs


def test_not_makedumpfile_or_not_installed() -> None:
    assert collector_problems(_config("core_collector cp\n"), None) == ([], [])
    errors, warnings = collector_problems(_config("core_collector makedumpfile -d 31\n"), None)
    assert errors == [] and "not installed here" in warnings[0] and "k.conf:1" in warnings[0]


@real
def test_config_check_refuses_an_option_makedumpfile_does_not_know(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("ext4 UUID=12345678-1234-1234-1234-123456789abc\n"
                    "core_collector makedumpfile -l --bogus -d 31\n")
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "config", "check", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{conf}:2: error: core_collector 'makedumpfile -l --bogus -d 31' is refused" \
        in r.stderr
    assert "unrecognized option '--bogus'" in r.stderr
