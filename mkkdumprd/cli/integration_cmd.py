"""`mkkdumprd install-integration`: the systemd unit and kernel hooks for non-packaged installs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from mkkdumprd.host import Host
from mkkdumprd.lifecycle import integration
from mkkdumprd.lifecycle.integration import Kind


def _this_exe() -> str:
    found = shutil.which("mkkdumprd")
    argv0 = sys.argv[0] if sys.argv and os.path.basename(sys.argv[0]) == "mkkdumprd" else None
    # The running script first: a venv's mkkdumprd is the one the hooks must call.
    return os.path.abspath(argv0 or found or integration.PACKAGED_EXE)


@click.command(name="install-integration")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Install into the system under this directory.")
@click.option("--only", "only", multiple=True,
              type=click.Choice([k.value for k in Kind]),
              help="Install only these (repeatable). Default: what the system uses "
                   "(systemd, kernel-install, Debian's /etc/kernel/post*.d).")
@click.option("--mkkdumprd", "exe", default=None, metavar="PATH",
              help="Path of mkkdumprd on that system (default: this one).")
@click.option("--remove", is_flag=True, help="Remove the files instead.")
def install_integration(root: Path, only: tuple[str, ...], exe: str | None,
                        remove: bool) -> None:
    """Install the systemd unit and kernel hooks (for pip or source installs).

    \b
    systemd         /etc/systemd/system/mkkdumprd.service (+ a generator that pulls in
                    network-online.target for nfs/ssh targets)
    kernel-install  /etc/kernel/install.d/60-mkkdumprd.install
    debian          /etc/kernel/postinst.d/mkkdumprd, /etc/kernel/postrm.d/mkkdumprd
    Running it again changes nothing. Then: systemctl daemon-reload; systemctl enable --now
    mkkdumprd.service.
    """
    host = Host(root)
    kinds = tuple(Kind(k) for k in only) if only else integration.detect(host)
    if not kinds:
        click.echo("nothing to install: no systemd, kernel-install or Debian kernel hooks "
                   "found here (choose with --only)")
        return
    if remove:
        changes = integration.remove(host, kinds)
    else:
        changes = integration.install(host, kinds, exe or _this_exe())
    for c in changes:
        click.echo(f"{c.action:<10} {c.path}")


COMMANDS: list[click.Command] = [install_integration]
