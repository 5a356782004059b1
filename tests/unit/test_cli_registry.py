"""The CLI's lazy command table names exactly the commands the modules define."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

from click.testing import CliRunner

import mkkdumprd.cli as cli
from mkkdumprd.cli import COMMAND_MODULES, main


def _defined() -> dict[str, str]:
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(cli.__path__):
        module = importlib.import_module(f"mkkdumprd.cli.{info.name}")
        for cmd in getattr(module, "COMMANDS", []):
            assert cmd.name not in found, f"{cmd.name} defined twice"
            found[cmd.name] = info.name
    return found


def test_table_matches_the_command_modules() -> None:
    assert _defined() == COMMAND_MODULES


def test_help_lists_every_command() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0, r.output
    for name in COMMAND_MODULES:
        assert f"  {name} " in r.output


def test_a_command_imports_only_its_own_module() -> None:
    code = ("import sys; from mkkdumprd.cli import main\n"
            "try:\n    main(['config', 'check', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('mkkdumprd.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "['mkkdumprd.cli.config_cmd']"


def test_unknown_first_word_goes_to_build() -> None:
    r = CliRunner().invoke(main, ["--target", "floppy"])
    assert r.exit_code == 2
    assert "floppy" in r.output
