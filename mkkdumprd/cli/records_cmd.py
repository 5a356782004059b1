"""`mkkdumprd report | pstore [setup]`: what past crashes left on this host, moving the
kernel's pstore records next to them, and a ramoops region in the boot configuration
(mkkdumprd/records/)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import click

from mkkdumprd.bootconfig.writer import Plan, perform
from mkkdumprd.config.kdumpconf import load_kdump_conf
from mkkdumprd.config.model import DEFAULT_PATH
from mkkdumprd.errors import MkkdumprdError, OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.quoting import FormatError
from mkkdumprd.records import pstore as pstore_mod
from mkkdumprd.records import setup as setup_mod
from mkkdumprd.records.crashes import Crash, list_crashes
from mkkdumprd.records.setup import read_state

_root = click.option("--root", type=click.Path(path_type=Path), default=Path("/"),
                     show_default=True, help="Act on the system installed under this root.")
_dirs = click.option("--dir", "dirs", multiple=True, metavar="PATH",
                     help="Where crash directories are (repeatable; default: kdump.conf's "
                          "`path` on the root filesystem).")
_config = click.option("-c", "--config", "config_file", default=None,
                       type=click.Path(path_type=Path), help="kdump.conf to read.")


def crash_roots(host: Host, dirs: tuple[str, ...], config_file: Path | None) -> list[PurePosixPath]:
    if dirs:
        return [PurePosixPath(d) for d in dirs]
    conf = config_file if config_file is not None else host.path("/etc/kdump.conf")
    return [PurePosixPath(load_kdump_conf(conf if conf.exists() else None).path)]


def last_crash(host: Host) -> Crash | None:
    """The newest crash under kdump.conf's path, for `status`: a kdump.conf that does not
    parse (`config check` says why) falls back to the default path, never fails status."""
    try:
        roots = crash_roots(host, (), None)
    except MkkdumprdError:
        roots = [PurePosixPath(DEFAULT_PATH)]
    crashes = list_crashes(host, roots)
    return crashes[0] if crashes else None


def crash_line(crash: Crash) -> str:
    when = crash.time.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{when}  {crash.result()}"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_dirs
@_config
@_root
def report(as_json: bool, dirs: tuple[str, ...], config_file: Path | None, root: Path) -> None:
    """List past crashes on this host, newest first: time, what happened to the dump (the
    capture image's outcome record), where the vmcore is, and the panic line (from
    vmcore-dmesg.txt, else from the pstore records `mkkdumprd pstore` archived)."""
    host = Host(root)
    crashes = list_crashes(host, crash_roots(host, dirs, config_file))
    if as_json:
        click.echo(json.dumps([c.as_json() for c in crashes], indent=2, ensure_ascii=False))
        return
    if not crashes:
        click.echo("no crash recorded")
        return
    for c in crashes:
        click.echo(crash_line(c))
        click.echo(f"  directory: {c.directory}")
        if c.vmcore:
            click.echo(f"  vmcore:    {c.directory / c.vmcore}")
        if c.panic:
            click.echo(f"  panic:     {c.panic}")
        if c.pstore:
            click.echo(f"  pstore:    {', '.join(c.pstore)}")


@click.group("pstore", invoke_without_command=True)
@click.option("--dry-run", is_flag=True, help="Say where each record would go; move nothing.")
@_dirs
@_config
@_root
@click.pass_context
def pstore_group(ctx: click.Context, dry_run: bool, dirs: tuple[str, ...],
                 config_file: Path | None, root: Path) -> None:
    """Move the kernel's pstore records (/sys/fs/pstore: dmesg-*, console-*, pmsg-*) into
    the crash directory of the same crash (`<path>/<host>-<date>/pstore/`), or a new one,
    and so free the pstore space. mkkdumprd-pstore.service runs this at boot, before
    systemd-pstore.service, which then finds nothing left to move."""
    if ctx.invoked_subcommand is not None:
        return
    host = Host(root)
    roots = crash_roots(host, dirs, config_file)
    records = pstore_mod.list_records(host)
    if not records:
        click.echo(f"no pstore records in {pstore_mod.PSTORE}")
        return
    moves = pstore_mod.plan_collect(host, records, roots[0], datetime.now(UTC))
    if dry_run:
        for mv in moves:
            new = " (new directory)" if mv.new else ""
            click.echo(f"would move {pstore_mod.PSTORE / mv.record.name} to "
                       f"{mv.directory}/pstore/{new}")
        return
    for line in pstore_mod.perform(host, moves):
        click.echo(f"moved {line}")


@pstore_group.command("setup")
@click.option("--kernel-release", default=None, metavar="RELEASE",
              help="The kernel the words are for (default: the running one).")
@click.option("--apply", "do_apply", is_flag=True,
              help="Write the words into the boot configuration (grubby, s390x zipl.conf, "
              "/etc/default/grub.d/mkkdumprd-ramoops.cfg or /etc/kernel/cmdline, as "
              "`crashkernel apply` does) and, where ramoops is a module, "
              "/etc/modules-load.d/mkkdumprd-ramoops.conf.")
@click.option("--remove", is_flag=True,
              help="Remove what --apply wrote (words set by hand stay).")
@click.option("--dry-run", "-n", is_flag=True, help="With --apply or --remove: show the diff; "
              "change nothing.")
@click.option("--force", is_flag=True,
              help="Override ramoops words set by hand (the words --apply wrote last are "
              "recognised as its own and need no --force).")
@click.option("--with-efi", is_flag=True,
              help="Apply even though EFI pstore is available (it keeps the first kernel's "
              "panics only; a ramoops region also keeps the capture image's outcome record).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_root
def setup(kernel_release: str | None, do_apply: bool, remove: bool, dry_run: bool,
          force: bool, with_efi: bool, as_json: bool, root: Path) -> None:
    """Say which persistent store this machine has for kernel logs, and the kernel command
    line words of a ramoops region where it has none; --apply writes them into the boot
    configuration, --remove takes them away again."""
    if do_apply and remove:
        raise UsageError("--apply and --remove exclude each other")
    if (dry_run or force or with_efi) and not (do_apply or remove):
        raise UsageError("--dry-run, --force and --with-efi go with --apply or --remove")
    host = Host(root)
    st = read_state(host)
    release = kernel_release or os.uname().release
    report: dict[str, object] = {"backend": st.backend or None, "efi": st.efi,
                                 "running_ramoops": list(st.ramoops_words)}
    lines: list[str] = [f"pstore backend: {st.backend or 'none registered'}"]
    if st.efi:
        lines.append("EFI: this machine booted through EFI, so efi_pstore (module efi_pstore, "
                     "enabled by default on Debian) keeps dmesg records of a panic in EFI "
                     "variables; they are small and the firmware may refuse to write them")
    plan: Plan | None = None
    words: list[str] = []
    notes: list[str] = []
    if remove:
        plan = setup_mod.plan_remove(host)
    elif st.ramoops_words and not (do_apply and (force or set(st.ramoops_words)
                                                <= set(setup_mod.recorded_words(host)))):
        # a region set up some other way: --apply adds no second one unless forced
        lines.append(f"ramoops: already configured ({' '.join(st.ramoops_words)})")
        if do_apply:
            notes.append("the running command line has ramoops words --apply did not write; "
                         "nothing written (--force writes the proposal anyway)")
    else:
        words, notes = setup_mod.setup_words(host, release, os.uname().machine)
        if words:
            lines.append("add to the kernel command line: " + " ".join(words))
        if do_apply and st.efi and not with_efi:
            notes.append("EFI pstore is available, so nothing is written; --with-efi adds "
                         "the ramoops region too (the capture image's outcome record is "
                         "kept only there)")
        elif do_apply and not words:
            raise OperationError("nothing to apply: " + "; ".join(notes))
        elif do_apply:
            try:
                plan = setup_mod.plan_apply(host, words, release, force)
            except FormatError as exc:
                raise UsageError(str(exc)) from None
    lines += [f"note: {n}" for n in notes]
    report.update(words=words, notes=notes, plan=None if plan is None else plan.as_json())
    done: list[str] = []
    if plan is not None:
        lines += [f"hand-set: {k}" for k in plan.kept]
        if plan.diff():
            lines.append(plan.diff().rstrip("\n"))
        if plan.command:
            lines.append(f"{'would run' if dry_run else 'command'}: {' '.join(plan.command)}")
        lines += [f"note: {n}" for n in plan.notes]
        if dry_run:
            lines.append("dry run: nothing written")
        elif plan.needed:
            done = perform(plan, host)
            lines += done
    report["done"] = done
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for line in lines:
            click.echo(line)


COMMANDS: list[click.Command] = [report, pstore_group]
