"""`mkkdumprd deps modules`: the module closure, one absolute .ko path per line."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mkkdumprd.host import Host
from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.index import ModuleIndex, find_kmoddir
from mkkdumprd.kmod.modprobe_d import DEFAULT_MODPROBE_D


@click.command()
@click.option("--kver", default=None, metavar="KVER",
              help="Kernel version (default: the running kernel).")
@click.option("--kmoddir", type=click.Path(path_type=Path), default=None,
              help="Module directory (default: /lib/modules/KVER under the sysroot).")
@click.option("--sysroot", type=click.Path(path_type=Path), default=Path("/"),
              show_default=True, help="Root of the system the image is built for.")
@click.option("--no-modprobe-d", is_flag=True,
              help="Ignore alias/softdep/blacklist lines of the sysroot's modprobe.d.")
@click.option("--omit", multiple=True, metavar="MODULE", help="Leave this module out.")
@click.argument("names", nargs=-1, required=True)
def modules(kver: str | None, kmoddir: Path | None, sysroot: Path, no_modprobe_d: bool,
            omit: tuple[str, ...], names: tuple[str, ...]) -> None:
    """Print the .ko files NAMES (modules or aliases) need, in load order."""
    view = Host(sysroot)
    kver = kver or os.uname().release
    directory = kmoddir if kmoddir is not None else find_kmoddir(view, kver)
    conf = None if no_modprobe_d else [view.path(d) for d in DEFAULT_MODPROBE_D]
    index = ModuleIndex.load(directory, kver, conf)
    closure = resolve_modules(index, names, omit=omit)
    for m in closure.modules:
        click.echo(str(m.path.absolute()))
    for name in closure.builtin:
        click.echo(f"mkkdumprd: {name} is built into kernel {kver}", err=True)
