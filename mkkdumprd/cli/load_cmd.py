"""`mkkdumprd load | unload | status`: the kexec_file_load loader on the command line.

The kernel's calls come from loader/live.py only: with --dry-run, or a --root that is not
the running system, load and unload print what they would do and call nothing. --root
reads /proc, /sys, /boot and /run from that tree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mkkdumprd.arch import host_arch, load_arch
from mkkdumprd.crashkernel.fit import record_fit
from mkkdumprd.errors import MkkdumprdError
from mkkdumprd.host import Host
from mkkdumprd.loader import live
from mkkdumprd.loader import load as loader
from mkkdumprd.loader import status as loader_status

_root = click.option("--root", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("/"), show_default=True,
                     help="Read /proc, /sys, /boot and /run under this directory; a root "
                          "other than the running system's only reports (as --dry-run).")
_arch = click.option("--arch", default=None, help="Architecture (default: this machine's).")


@click.command()
@click.option("--kernel", "-k", default=None, help="Kernel image (default: found for --kver).")
@click.option("--initrd", "-i", default=None,
              help="Capture image (default: /boot/initramfs-KVERkdump.img, else "
                   "/var/lib/mkkdumprd/initramfs-KVERkdump.img).")
@click.option("--no-initrd", is_flag=True, help="Load without an initramfs.")
@click.option("--kver", default=None, help="Kernel version (default: the running one).")
@click.option("--cmdline", default=None,
              help="Base command line instead of /proc/cmdline and the settings files' "
                   "base (still filtered).")
@click.option("--append", "-a", multiple=True, help="Extra capture-kernel words (repeatable).")
@click.option("--dry-run", "-n", is_flag=True, help="Print what would be passed; load nothing.")
@_arch
@_root
def load(kernel: str | None, initrd: str | None, no_initrd: bool, kver: str | None,
         cmdline: str | None, append: tuple[str, ...], dry_run: bool, arch: str | None,
         root: Path) -> None:
    """Load the capture kernel and image with kexec_file_load(2).

    Its command line is /proc/cmdline (or a base set in /etc/default/kdump-tools,
    /etc/sysconfig/kdump or /etc/mkkdumprd/cmdline.conf) filtered, plus the arch defaults,
    the files' appends and --append; --dry-run lists each word with where it came from.

    On kernels without kexec_file_load (ENOSYS: Debian's arm64, ppc64el, riscv64), falls back to
    kexec_load through kexec-tools' `kexec -p` when that is installed.
    """
    host = Host(root)
    info = load_arch(arch or host_arch())
    plan = loader.plan_load(host, info, kver=kver, kernel=kernel, initrd=initrd,
                            no_initrd=no_initrd, cmdline=cmdline, append=append)
    running = live.kernel_for(root, dry_run=dry_run)
    if running is None:
        click.echo(plan.describe(host))
        click.echo(f"{live.why_not(root, dry_run=dry_run)}: kexec_file_load not called")
        return
    record = loader.execute_load(plan, host, running)
    if record.get("note"):
        click.echo(f"mkkdumprd: {record['note']}")
    click.echo(f"loaded {record['kernel']} ({record['kernel_how']}) with {record['initrd']}")
    fit = record_fit(host, info, record)
    if fit is not None and fit.short:
        click.echo(f"mkkdumprd: warning: {fit.warning()}", err=True)


@click.command()
@_arch
@_root
def unload(arch: str | None, root: Path) -> None:
    """Unload the capture kernel."""
    host = Host(root)
    info = load_arch(arch or host_arch())
    kernel = live.kernel_for(root)
    if kernel is None:
        click.echo(f"would unload the crash kernel; {live.why_not(root)}: nothing called")
        return
    loader.unload(host, info, kernel)
    click.echo("crash kernel unloaded")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_root
def status(as_json: bool, root: Path) -> None:
    """Say whether a capture kernel is loaded (exit 0) or not (exit 3), and what happened
    to the last crash's dump (`mkkdumprd report` lists them all)."""
    host = Host(root)
    st = loader_status.read_status(host)
    fit = None
    if st.loaded and st.record:
        rec_arch = st.record.get("arch")
        try:
            info = load_arch(rec_arch if isinstance(rec_arch, str) else host_arch())
        except MkkdumprdError:
            info = None
        fit = record_fit(host, info, st.record) if info is not None else None
    from mkkdumprd.cli.records_cmd import crash_line, last_crash
    crash = last_crash(host)
    if as_json:
        doc = loader_status.status_json(st)
        doc["reservation_fit"] = fit.as_json() if fit is not None else None
        doc["last_crash"] = crash.as_json() if crash is not None else None
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(loader_status.format_status(st))
        if fit is not None and fit.short:
            click.echo(f"warning:      {fit.warning()}")
        click.echo(f"last crash:   {crash_line(crash) if crash is not None else 'none recorded'}")
    sys.exit(st.exit_code)


COMMANDS: list[click.Command] = [load, unload, status]
