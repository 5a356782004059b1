"""bash and zsh completion scripts, generated at package build time by click's own
mechanism: the script calls `mkkdumprd` with _MKKDUMPRD_COMPLETE set, and the click command
tree answers, so completion always knows the installed commands and options.

    python3 -m mkkdumprd.completion OUTDIR   # OUTDIR/bash/mkkdumprd, OUTDIR/zsh/_mkkdumprd
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from mkkdumprd.atomic_file import atomic_write

PROG = "mkkdumprd"
ENV_VAR = "_MKKDUMPRD_COMPLETE"
# Where each shell looks for a completion file named after the command.
FILES = {"bash": "bash/mkkdumprd", "zsh": "zsh/_mkkdumprd"}


def script(root: click.Command, shell: str) -> str:
    cls = get_completion_class(shell)
    if cls is None:
        raise ValueError(f"click has no completion for {shell}")
    return cls(root, {}, PROG, ENV_VAR).source()


def write_scripts(outdir: Path) -> list[Path]:
    from mkkdumprd.cli import main

    written = []
    for shell, name in FILES.items():
        path = outdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, script(main, shell), mode=0o644)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m mkkdumprd.completion OUTDIR")
    for p in write_scripts(Path(sys.argv[1])):
        print(p)
