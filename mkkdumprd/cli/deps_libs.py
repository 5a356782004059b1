"""`mkkdumprd deps libs`: the shared-library closure the builder would put in the image."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import click

from mkkdumprd.elf.closure import resolve_closure
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host


@click.command()
@click.option("--sysroot", type=click.Path(file_okay=False, path_type=Path),
              help="Resolve inside this root (its ld.so.cache, ld.so.conf and libraries).")
@click.option("--machine", metavar="ARCH",
              help="Expected architecture (x86_64, aarch64, ...); default: the first FILE's.")
@click.option("--dlopen", "dlopen", multiple=True, metavar="SONAME",
              help="Also include a library the program dlopen()s (repeatable).")
@click.option("--realpath", "realpaths", is_flag=True,
              help="Print canonical paths (symlinks resolved) instead of the paths "
                   "the loader opens.")
@click.argument("files", nargs=-1, required=True)
def libs(sysroot: Path | None, machine: str | None, dlopen: tuple[str, ...],
         realpaths: bool, files: tuple[str, ...]) -> None:
    """Print the objects the dynamic loader opens for FILE..., one absolute path a line.

    Follows glibc's ld.so: PT_INTERP, DT_NEEDED, RPATH/RUNPATH, $ORIGIN, ld.so.cache and
    the default directories; a #! script brings its interpreter. Roots are not printed.
    """
    if sysroot is not None and not sysroot.is_dir():
        raise UsageError(f"--sysroot {sysroot} is not a directory")
    view = Host(sysroot.resolve()) if sysroot is not None else Host.this_machine()
    roots: list[PurePosixPath] = []
    for f in files:
        if f.startswith("/"):
            roots.append(PurePosixPath(f))
        elif sysroot is None:
            roots.append(PurePosixPath(os.path.abspath(f)))
        else:
            # Relative to the sysroot's / (how the target system would see it).
            roots.append(PurePosixPath("/", f))
    closure = resolve_closure(roots, view, dlopen=dlopen, machine=machine)
    for obj in closure.objects:
        click.echo(str(view.resolve(obj)) if realpaths else str(obj))
