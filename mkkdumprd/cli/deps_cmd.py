"""`mkkdumprd deps`: the closures the builder computes, printed for scripts and debugging."""

import click

from mkkdumprd.cli.deps_libs import libs
from mkkdumprd.cli.deps_modules import modules


@click.group()
def deps() -> None:
    """Show what a binary or a kernel module pulls into the image."""


deps.add_command(libs)
deps.add_command(modules)

COMMANDS: list[click.Command] = [deps]
