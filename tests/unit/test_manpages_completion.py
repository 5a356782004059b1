"""mkkdumprd(8) and kdump.conf(5) are generated from the click tree and the directive table,
render with `man -l` without warnings and name every command and directive; the bash and
zsh completion scripts from click load in a non-interactive shell and complete."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mkkdumprd.cli import COMMAND_MODULES, main
from mkkdumprd.completion import write_scripts
from mkkdumprd.config import kdumpconf
from mkkdumprd.config.directives import DIRECTIVES
from mkkdumprd.manpages import roff, write_pages

CHECKOUT = Path(__file__).resolve().parents[2]


def _render(page: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MAN_KEEP_FORMATTING"}
    env["MANWIDTH"] = "200"
    r = subprocess.run(["man", "--warnings", "-l", str(page)], env=env, capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def _command_paths(group: click.Group, prefix: str) -> list[str]:
    ctx = click.Context(group, info_name=prefix)
    paths = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        paths.append(f"{prefix} {name}")
        if isinstance(cmd, click.Group):
            paths += _command_paths(cmd, f"{prefix} {name}")
    return paths


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    eight, five = write_pages(tmp_path_factory.mktemp("man"))
    return _render(eight), _render(five)


def test_mkkdumprd_8_has_every_command_and_option(pages: tuple[str, str]) -> None:
    text = pages[0]
    paths = _command_paths(main, "mkkdumprd")
    assert len(paths) > len(COMMAND_MODULES)  # the groups' subcommands are there too
    for path in paths:
        assert f"\n   {path}\n" in text, path
    for word in ("--kver", "--sysroot", "--no-hostonly", "EXIT STATUS", "kdump.conf(5)"):
        assert word in text


def test_kdump_conf_5_has_every_directive(pages: tuple[str, str]) -> None:
    text = pages[1]
    for name in (*kdumpconf.KNOWN, *kdumpconf.DEPRECATED):
        assert f"\n       {name}" in text or f", {name}" in text or f": {name}." in text, name
    for row in DIRECTIVES:  # the doc --help shows, word for word
        assert " ".join(row.doc.split()) in " ".join(text.split()), row.key
    assert "mkkdumprd(8)" in text


def test_roff_escapes_requests_and_backslashes() -> None:
    assert roff(".x\n'y\na-b\\c") == "\\&.x\n\\&'y\na\\-b\\ec"


@pytest.fixture(scope="module")
def completions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    out = tmp_path_factory.mktemp("completion")
    bash, zsh = write_scripts(out)
    # The console script pip and dh-python write: argv[0] names the program.
    bindir = out / "bin"
    bindir.mkdir()
    exe = bindir / "mkkdumprd"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(CHECKOUT)!r})\n"
                   "from mkkdumprd.cli import main\nmain()\n")
    exe.chmod(0o755)
    return bash, zsh, bindir


def _bash_complete(bash: Path, bindir: Path, words: str) -> list[str]:
    script = (f"source {bash}\ncomplete -p mkkdumprd\n"
              f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
              "_mkkdumprd_completion mkkdumprd\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                       capture_output=True, text=True, check=True)
    first, *rest = r.stdout.splitlines()
    assert first == "complete -o nosort -F _mkkdumprd_completion mkkdumprd"
    return rest


def test_bash_completes_commands_subcommands_and_options(
        completions: tuple[Path, Path, Path]) -> None:
    bash, _, bindir = completions
    assert _bash_complete(bash, bindir, "mkkdumprd cr") == ["crashkernel"]
    assert _bash_complete(bash, bindir, "mkkdumprd crashkernel ''") == [
        "apply", "parse", "recommend"]
    assert "--kver" in _bash_complete(bash, bindir, "mkkdumprd build --k")
    assert "build" in _bash_complete(bash, bindir, "mkkdumprd ''")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed (dev/setup adds it)")
def test_zsh_loads_the_completion_function(completions: tuple[Path, Path, Path]) -> None:
    _, zsh, bindir = completions
    script = (f"fpath=({zsh.parent} $fpath)\nautoload -Uz compinit && compinit -u -D\n"
              "print -r -- ${_comps[mkkdumprd]}\n"
              "env COMP_WORDS='mkkdumprd cr' COMP_CWORD=1 _MKKDUMPRD_COMPLETE=zsh_complete "
              "mkkdumprd\n")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(bindir)}
    r = subprocess.run(["zsh", "-f", "-c", script], env=env, capture_output=True, text=True,
                       check=True)
    lines = r.stdout.splitlines()
    assert lines[0] in ("_mkkdumprd", "_mkkdumprd_completion"), r.stdout + r.stderr
    assert lines[1:4] == ["plain", "crashkernel", "_"] or "crashkernel" in lines[1:], r.stdout
