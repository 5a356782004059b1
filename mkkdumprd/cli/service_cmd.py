"""`mkkdumprd start | stop | restart | reload | rebuild`: kdumpctl's verbs.

`mkkdumprd status` (cli/load_cmd.py) is the fourth: exit 0 when a crash kernel is loaded,
3 when not, as `kdumpctl status`. The kernel comes from loader/live.py: with a --root that
is not the running system the verbs build under it as usual but only report the load and
unload (lifecycle/service.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from mkkdumprd.arch import host_arch, load_arch
from mkkdumprd.host import Host
from mkkdumprd.lifecycle import service
from mkkdumprd.loader import live


def _echo(msg: str) -> None:
    click.echo(msg)


def _warn(msg: str) -> None:
    click.echo(f"mkkdumprd: warning: {msg}", err=True)


def _service(root: Path, config_path: Path | None, kver: str | None,
             arch: str | None, loads: bool) -> service.Service:
    return service.Service(machine=Host(root), arch=load_arch(arch or host_arch()),
                           kernel=live.kernel_for(root) if loads else None,
                           config_path=config_path, kver=kver,
                           echo=_echo, warn=_warn)


def _verb(name: str, fn: Callable[[service.Service], service.Outcome],
          doc: str) -> click.Command:
    @click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
                  help="kdump.conf (default ROOT/etc/kdump.conf, Fedora's defaults if absent).")
    @click.option("--kver", default=None, help="Kernel version (default: the running one).")
    @click.option("--arch", default=None, help="Architecture (default: this machine's).")
    @click.option("--root", type=click.Path(file_okay=False, path_type=Path),
                  default=Path("/"), show_default=True,
                  help="Act on the system under this directory (its /etc, /boot, /proc, /sys, "
                       "/run); unless it is the running system, loads and unloads are only "
                       "reported.")
    def cmd(config_path: Path | None, kver: str | None, arch: str | None, root: Path) -> None:
        fn(_service(root, config_path, kver, arch, loads=name != "rebuild"))

    cmd.__doc__ = doc
    return click.command(name=name)(cmd)


start = _verb("start", service.start,
              "Check the crashkernel= reservation, build the capture image if it is missing "
              "or out of date, and load it (as `kdumpctl start`). A file there that is not "
              "an mkkdumprd image is left alone: `mkkdumprd rebuild` replaces it.")
stop = _verb("stop", service.stop, "Unload the crash kernel (as `kdumpctl stop`).")
reload = _verb("reload", service.reload,
               "Unload and load the existing capture image again, without a rebuild.")
restart = _verb("restart", service.restart,
                "Stop and start: rebuild if needed, then reload (the old crash kernel stays "
                "loaded if the build fails).")
rebuild = _verb("rebuild", service.rebuild,
                "Build the capture image for the kernel unconditionally, replacing whatever "
                "file is there; load nothing.")

COMMANDS: list[click.Command] = [start, stop, restart, reload, rebuild]
