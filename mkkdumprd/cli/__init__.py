"""The `mkkdumprd` command line (click).

Each command group lives in its own module here and is registered below. Bare
`mkkdumprd [build options]` means `mkkdumprd build ...`, as distro scripts type it.
Errors derived from MkkdumprdError print as one sentence with their exit code (1 failed,
2 usage/config); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from mkkdumprd import __version__
from mkkdumprd.errors import MkkdumprdError

DEFAULT_COMMAND = "build"


class DefaultGroup(click.Group):
    """A group that runs `build` when the first word is not a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if a != "--debug"), None)
        if first is None or (first not in self.commands and first not in ("--help", "-h",
                                                                          "--version")):
            idx = args.index(first) if first is not None else len(args)
            args = [*args[:idx], DEFAULT_COMMAND, *args[idx:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MkkdumprdError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"mkkdumprd: error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and extra detail on errors.")
@click.version_option(__version__, prog_name="mkkdumprd")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Build, size, load and prove Linux kdump capture images.

    Without a subcommand, the arguments go to `build`:
    `mkkdumprd --target nfs:server:/export` builds a capture image.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    from mkkdumprd.cli import (
        build_cmd,
        config_cmd,
        crashkernel_cmd,
        deps_cmd,
        integration_cmd,
        load_cmd,
        ls_cmd,
        propagate_cmd,
        service_cmd,
    )

    for mod in (build_cmd, config_cmd, crashkernel_cmd, deps_cmd, integration_cmd, load_cmd,
                ls_cmd, propagate_cmd, service_cmd):
        for cmd in mod.COMMANDS:
            main.add_command(cmd)


_register()
