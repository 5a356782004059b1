"""`mkkdumprd build` (also bare `mkkdumprd --target ...`) and `mkkdumprd savecore`."""

from __future__ import annotations

import os
import time
from contextlib import suppress
from pathlib import Path

import click

from mkkdumprd.config.model import POLICY_HELP, DumpPolicy
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.human_size import human_size
from mkkdumprd.image.compression import Compression, parse_compress
from mkkdumprd.uptodate import recorder
from mkkdumprd.uptodate import stamp as uptodate_stamp

_SPEC_GRAMMAR = """\b
SPEC (overrides kdump.conf's target):
  local[:DEVICE][:PATH]   a filesystem; DEVICE is /dev/NAME, UUID=, LABEL= or PARTUUID=
  FSTYPE:DEVICE[:PATH]    the same with the type named (ext2, ext3, ext4, xfs, btrfs)
  raw:DEVICE              a bare block device (recover with `mkkdumprd savecore`)
  nfs[:SERVER:/EXPORT[/PATH]]   ssh[:USER@HOST[:PATH]]
A bare `local` without DEVICE is the filesystem holding PATH on this machine.
"""


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.replace(",", " ").split() if x)
    return tuple(dict.fromkeys(out))


def default_output(kver: str, view: Host) -> Path:
    """Fedora's place: /boot when it is writable, /var/lib/mkkdumprd otherwise."""
    from mkkdumprd.lifecycle.locations import capture_image

    return view.path(capture_image(view, kver))


def _default_kver(view: Host) -> str:
    if view.is_live:
        return os.uname().release
    kvers = view.listdir("/lib/modules")
    if len(kvers) == 1:
        return kvers[0]
    raise UsageError(
        f"cannot tell which kernel to build for in {view.root} (found "
        f"{', '.join(kvers) or 'none'} under /lib/modules); give --kver"
    )


def _checked_ip(ip: str | None) -> str | None:
    """Reject a malformed --ip before anything is built (the network hook parses it again)."""
    if ip is None:
        return None
    from mkkdumprd.network.ipconfig import parse_ip

    text = ip.removeprefix("ip=")
    parse_ip(text)
    return text


def _checked_compress(ctx: click.Context, param: click.Parameter,
                      value: str) -> tuple[Compression, int | None]:
    try:
        return parse_compress(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _default_arch(view: Host) -> str:
    """This machine's, or for --sysroot the root's own (from its shell's ELF header)."""
    from mkkdumprd.arch import ARCHES, host_arch

    if view.is_live:
        return host_arch()
    from mkkdumprd.elf.closure import arch_of  # only for a --sysroot: it costs ~40 ms

    found = arch_of(view)
    return found if found in ARCHES else host_arch()


def _quick_exit() -> None:
    """At exit, the cyclic garbage collector skips what the process holds (gc.freeze): its
    final collections over a build's ~250 modules and the module index were ~30 ms of a
    cold build's process, for memory the kernel takes back anyway. Files are closed by
    then (every write is a `with` block); objects are still released as modules are torn
    down, only cycles are left to the kernel. Registered once, also when a test process
    runs the command."""
    global _QUICK_EXIT
    if not _QUICK_EXIT:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _QUICK_EXIT = True


_QUICK_EXIT = False


@click.command(epilog=_SPEC_GRAMMAR)
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              help="kdump.conf to read (default /etc/kdump.conf, or Fedora's defaults "
                   "when it does not exist).")
@click.option("--target", "target_specs", metavar="SPEC", multiple=True,
              help="Dump target, overriding the ones in kdump.conf (grammar below); "
                   "repeatable, in the order the dump tries them (with --dump-policy).")
@click.option("--dump-policy", "dump_policy", type=click.Choice([p.value for p in DumpPolicy]),
              help=POLICY_HELP)
@click.option("--kver", metavar="KVER",
              help="Kernel version to build for (default: the running kernel, or the only "
                   "one under SYSROOT/lib/modules).")
@click.option("--kmoddir", type=click.Path(path_type=Path),
              help="Module folder of that kernel (default SYSROOT/lib/modules/KVER).")
@click.option("--sysroot", type=click.Path(path_type=Path, file_okay=False),
              help="Take binaries, libraries, modules and the host's devices from this "
                   "root instead of / (a chroot or image tree).")
@click.option("--arch", metavar="ARCH",
              help="Target architecture (default: this machine's, or with --sysroot the "
                   "root's own, from its /bin/sh).")
@click.option("--add-drivers", multiple=True, metavar="M,..",
              help="Kernel modules to add (names or aliases, comma or space separated; "
                   "repeatable). Needed with --no-hostonly: e.g. virtio_pci,virtio_blk,ext4.")
@click.option("--add", "add_modules", multiple=True, metavar="MODULE,..",
              help="Capture-image modules (modules.d) to add (comma or space separated; "
                   "repeatable), for "
                   "what host-only discovery cannot see: lvm, mdraid, crypt, btrfs, "
                   "multipath under a local target of another machine (dracut's --add; "
                   "kdump.conf's dracut_args --add does the same). iscsi comes only "
                   "with host-only discovery, which reads the session's portal.")
@click.option("--omit-drivers", multiple=True, metavar="M,..",
              help="Kernel modules to leave out wherever they appear.")
@click.option("--hostonly/--no-hostonly", default=True,
              help="Host-only (default): find the target's drivers on this machine and "
                   "check the target exists. --no-hostonly builds for another machine: the "
                   "target is taken as given and drivers come from --add-drivers.")
@click.option("--compress", "compress", default="zstd", show_default=True,
              metavar="FORMAT[:LEVEL]", callback=_checked_compress,
              help="Compression of the image: zstd, gzip, xz or none, with an optional "
                   "level (zstd 1-19, default 3; gzip 1-9; xz 0-9). zstd:19 gives the "
                   "smallest zstd image (about a quarter smaller) for 60-160x the "
                   "compression time, seconds instead of tens of milliseconds, and an 8 MiB "
                   "instead of 2 MiB decoder window in the capture kernel "
                   "(bench/compress_levels.py).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the image (default /boot/initramfs-KVERkdump.img if "
                   "/boot is writable, else /var/lib/mkkdumprd/initramfs-KVERkdump.img).")
@click.option("--force", is_flag=True,
              help="Rebuild even when the image is up to date (without it, an unchanged "
                   "image is kept: inputs are compared by content), and overwrite a file "
                   "that is not an mkkdumprd image.")
@click.option("--timeout", type=click.IntRange(1, 3600), default=90, show_default=True,
              help="Seconds the capture image waits for the target before failure_action "
                   "(kdump.timeout=N on the capture kernel command line overrides it).")
@click.option("--size-report", is_flag=True,
              help="Print what takes the space in the image: totals by kind (kernel "
                   "modules, libraries, binaries, ...) and the largest files.")
@click.option("--ip", "ip", metavar="IP=SPEC",
              help="Capture network for nfs/ssh targets and netconsole in dracut's ip= "
                   "syntax, e.g. 10.0.2.15::10.0.2.2:255.255.255.0::eth0:none or eth0:dhcp "
                   "(default: the host's route to the target; DHCP with --no-hostonly).")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and errors.")
def build(config_path: Path | None, target_specs: tuple[str, ...], dump_policy: str | None,
          kver: str | None,
          kmoddir: Path | None, sysroot: Path | None, arch: str | None,
          add_drivers: tuple[str, ...], add_modules: tuple[str, ...],
          omit_drivers: tuple[str, ...], hostonly: bool,
          compress: tuple[Compression, int | None], output: Path | None, force: bool,
          timeout: int,
          size_report: bool, ip: str | None, quiet: bool) -> None:
    """Build a kdump capture initramfs for a kernel.

    The image holds busybox (or the host's tools), makedumpfile, the kernel modules needed
    to reach the dump target, and a generated /init that saves /proc/vmcore to the target
    as configured in kdump.conf. Run without a subcommand, `mkkdumprd [OPTIONS]` means
    `mkkdumprd build [OPTIONS]`.

    An existing image is rebuilt only when something it was built from changed (kdump.conf,
    a kernel module, binary, library, firmware, template, the kernel, mkkdumprd, the
    options); otherwise it says "up to date" and exits 0. kdump.conf's force_rebuild and
    force_no_rebuild are honoured; --force always rebuilds. A check that finds the image
    current leaves a stamp of what it looked at in the build cache: the next identical run
    answers from it in a few milliseconds while all of that is unchanged.
    """
    from mkkdumprd.arch import load_arch
    from mkkdumprd.assemble.rebuild_policy import Did, Ensured, Overwrite, ensure_image
    from mkkdumprd.assemble.request import BuildRequest
    from mkkdumprd.config.kdumpconf import load_kdump_conf
    from mkkdumprd.config.target_spec import apply_targets

    _quick_exit()
    t0 = time.monotonic()
    rec = _record_for_stamp(force or size_report, (config_path, kmoddir, sysroot, output))
    view = Host(sysroot) if sysroot else Host.this_machine()
    config = load_kdump_conf(config_path, default=view.path("/etc/kdump.conf"))
    if target_specs or dump_policy is not None:
        config = apply_targets(config, list(target_specs), dump_policy)
    kver = kver or _default_kver(view)
    kmoddir = kmoddir or view.path(f"/lib/modules/{kver}")
    arch_name = load_arch(arch).name if arch else _default_arch(view)
    out = output or default_output(kver, view)
    if output is None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationError(f"cannot create {out.parent}: {exc.strerror}; run as root "
                                 "or pass -o FILE") from None
    req = BuildRequest(
        config=config, kver=kver, kmoddir=kmoddir, sysroot=view, machine=view, arch=arch_name,
        hostonly=hostonly, add_drivers=_split(add_drivers), omit_drivers=_split(omit_drivers),
        add_modules=_split(add_modules),
        compression=compress[0], level=compress[1], output=out, timeout=timeout,
        ip=_checked_ip(ip),
    )

    def announce(decision: Ensured) -> None:
        recorder.stop()  # what the build reads is not an observation of the check
        if not quiet and decision.did is Did.REBUILT:
            for reason in decision.reasons:
                click.echo(f"rebuilding: {reason}")

    ensured = ensure_image(req, Overwrite.ALWAYS if force else Overwrite.IF_STALE,
                           before_build=announce)
    recorder.stop()
    if ensured.result is None:
        note = f" ({'; '.join(ensured.reasons)})" if ensured.reasons else ""
        text = "" if quiet else f"up to date: {out}{note}\n"
        if rec is not None and rec.taint is None and not ensured.reasons:
            # Kept by the full check (not force_no_rebuild): the next identical run may
            # replay what this one observed (uptodate/stamp.py).
            uptodate_stamp.save(uptodate_stamp.entry_argv or [], text, rec.seen)
        if text:
            click.echo(text, nl=False)
            if size_report:
                _print_size_report(out)
        return
    result = ensured.result
    for w in result.warnings:
        click.echo(f"mkkdumprd: warning: {w}", err=True)
    if quiet:
        return
    stats = result.stats
    assert stats is not None
    click.echo(f"image:    {out}")
    click.echo(f"kernel:   {kver} ({arch_name})")
    click.echo(f"target:   {result.target.describe()}")
    if result.target.stack is not None:
        click.echo(f"stack:    {result.target.stack.describe()}")
    for more in result.more_targets:
        click.echo(f"          then {more.describe()} ({config.dump_policy.value})")
    root = result.rootfs
    if root is not None and root.stack is not None and root.stack.modules():
        click.echo(f"rootfs:   {root.stack.describe()} (failure_action dump_to_rootfs)")
    click.echo(f"size:     {human_size(stats.compressed_size)} "
               f"{compress[0].value}{f':{compress[1]}' if compress[1] is not None else ''}, "
               f"{human_size(stats.unpacked_size)} unpacked")
    click.echo(f"entries:  {stats.entries}; kernel modules: {len(result.kernel_modules)}; "
               f"modules.d: {', '.join(result.modules)}")
    click.echo(f"time:     {time.monotonic() - t0:.2f} s")
    if size_report:
        _print_size_report(out)


def _record_for_stamp(skip: bool, paths: tuple[Path | None, ...]) -> recorder.Recorder | None:
    """Start recording what this run observes, when its outcome may be stamped: started
    through the entry point (not as a library), without --force or --size-report.
    `paths`: the options click already stat'ed (click.Path) before this function ran."""
    if skip or uptodate_stamp.entry_argv is None:
        return None
    rec = recorder.Recorder(uptodate_stamp.cache_ignore())
    recorder.start(rec)
    for p in paths:
        if p is not None:
            with suppress(OSError):
                os.stat(p)  # recorded: click's own look at it, before the recording began
    click.get_current_context().call_on_close(recorder.stop)
    return rec


def _print_size_report(image: Path) -> None:
    from mkkdumprd.image.size_report import report

    for line in report(image):
        click.echo(line)


@click.command(name="savecore")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              help="kdump.conf naming the raw target and the path (default /etc/kdump.conf).")
@click.option("--device", type=click.Path(path_type=Path),
              help="Raw device (or file) to read instead of kdump.conf's raw target.")
@click.option("--path", "save_path", type=click.Path(path_type=Path, file_okay=False),
              help="Directory for the recovered dump instead of kdump.conf's path.")
def savecore_cmd(config_path: Path | None, device: Path | None,
                 save_path: Path | None) -> None:
    """Recover a dump that the capture kernel wrote onto a raw device.

    Run in the first kernel after a crash (as Fedora's kdumpctl does at start). When the
    device starts with a makedumpfile flattened stream that runs whole to its end record,
    `makedumpfile -R` rebuilds it as PATH/YYYY-MM-DD-HH:MM/vmcore (written as
    vmcore-incomplete, renamed when done) and the first 512 bytes of the device are
    zeroed, so the same dump is not recovered twice. A stream cut short (device too small,
    failed write) is not rebuilt: its signature is replaced by 'mkkdumprd-failed' so later
    boots skip it, and the command exits 1.
    """
    from mkkdumprd.config.kdumpconf import load_kdump_conf
    from mkkdumprd.config.model import TargetKind
    from mkkdumprd.lifecycle.savecore import SaveResult, savecore

    config = load_kdump_conf(config_path)
    if device is None:
        raw = next((t.device for t in config.targets
                    if t.kind is TargetKind.RAW and t.device), None)
        if raw is None:
            raise UsageError(
                f"{config.source} has no raw target; give the device with --device"
            )
        device = Path(raw)
    res: SaveResult = savecore(device, save_path or Path(config.path))
    click.echo(res.message)


COMMANDS: list[click.Command] = [build, savecore_cmd]
