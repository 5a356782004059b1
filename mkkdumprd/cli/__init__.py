"""The `mkkdumprd` command line (click).

Each command group lives in its own module here, found through COMMAND_MODULES. Bare
`mkkdumprd [build options]` means `mkkdumprd build ...`, as distro scripts type it.
Errors derived from MkkdumprdError print as one sentence with their exit code (1 failed,
2 usage/config, 4 broken shipped data: mkkdumprd/errors.py), and so does any OSError that
escaped (exit 1, with its file); `--debug` shows the traceback as well.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from mkkdumprd import __version__
from mkkdumprd.errors import MkkdumprdError, error_line

DEFAULT_COMMAND = "build"

# Command name -> the module of mkkdumprd.cli that defines it (in its COMMANDS list).
# Modules are imported on first use, so `mkkdumprd build` finding its image up to date does
# not pay for importing every other command. tests/unit/test_cli_registry.py keeps this
# table equal to what the modules define.
COMMAND_MODULES: dict[str, str] = {
    "build": "build_cmd",
    "savecore": "build_cmd",
    "config": "config_cmd",
    "crashkernel": "crashkernel_cmd",
    "estimate": "crashkernel_cmd",
    "showmem": "crashkernel_cmd",
    "deps": "deps_cmd",
    "install-integration": "integration_cmd",
    "load": "load_cmd",
    "unload": "load_cmd",
    "status": "load_cmd",
    "ls": "ls_cmd",
    "propagate": "propagate_cmd",
    "pstore": "records_cmd",
    "report": "records_cmd",
    "start": "service_cmd",
    "stop": "service_cmd",
    "restart": "service_cmd",
    "reload": "service_cmd",
    "rebuild": "service_cmd",
    "test": "test_cmd",
}


class DefaultGroup(click.Group):
    """Commands loaded on demand; `build` runs when the first word is not a command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except MkkdumprdError as exc:
            # A missing system library (libarchive13) is found while importing, which
            # `--help` does too, outside invoke(): still one line, not a traceback.
            click.echo(f"mkkdumprd: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        commands: list[click.Command] = module.COMMANDS
        return next(c for c in commands if c.name == cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if a != "--debug"), None)
        if ctx.resilient_parsing and first is None:
            # Shell completion of the first word: offer the commands, not build's options.
            return super().parse_args(ctx, args)
        if first is None or (first not in COMMAND_MODULES
                             and first not in ("--help", "-h", "--version")):
            idx = args.index(first) if first is not None else len(args)
            args = [*args[:idx], DEFAULT_COMMAND, *args[idx:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MkkdumprdError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                _print_traceback()
            click.echo(error_line(exc), err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            # The last net for an I/O error no stage turned into a sentence: still one line.
            if ctx.obj and ctx.obj.get("debug"):
                _print_traceback()
            where = f"{exc.filename}: " if exc.filename is not None else ""
            click.echo(f"mkkdumprd: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)


def _print_traceback() -> None:
    import traceback  # only for --debug: ~5 ms (linecache, tokenize) every run would pay

    traceback.print_exc()


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and extra detail on errors.")
@click.version_option(__version__, prog_name="mkkdumprd")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Build, size, load and prove Linux kdump capture images.

    Without a subcommand, the arguments go to `build`:
    `mkkdumprd --target nfs:server:/export` builds a capture image.

    Exit codes: 0 done; 1 the operation failed; 2 usage or configuration error; 4 a file
    mkkdumprd ships (mkkdumprd/data/: modules.d, templates, arch) is broken, a bug or a
    damaged installation; `status` exits 3 when no crash kernel is loaded.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
