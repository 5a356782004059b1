"""`mkkdumprd test`: prove the dump path — in a QEMU guest (--vm), or by crashing this machine.

--vm boots the kernel (this machine's, or --kernel/--kver/--kmoddir) in QEMU with a first
stage that loads the capture image with mkkdumprd's own loader, crashes the guest, and
reports whether a complete vmcore arrived on a stand-in for the target (mkkdumprd/vmtest/).
Without --vm it is kdumpctl's `test`: a real crash of this machine, through loader/live.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.loader.cmdline_settings import SOURCES, read_settings

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest
    from mkkdumprd.vmtest.run import Proof

_EPILOG = """\b
What the host needs for --vm: qemu-system-x86_64, busybox, makedumpfile, e2fsprogs
(mkfs.ext4, debugfs), /usr/bin/python3 >= 3.11 of the guest's architecture (its
compiled standard library and mkkdumprd's loader run in the guest), nfs-ganesha for
nfs targets, and sshd and ssh-keygen (openssh-server, openssh-client) for ssh targets.
Nothing leaves this machine (but with --real-target): the guest's only network is QEMU
user networking with restrict=on and a relay to the stand-in server on 127.0.0.1.
\b
local targets: ext2/3/4 on a disk get a scratch disk made here (same UUID/label). xfs,
btrfs (the subvolume at the image's subvolid=), a partition (vdb2: MBR written here),
LVM (thin too), md RAID and LUKS (where the kernel has CRASH_DM_CRYPT) are made by the
guest before the load, on blank scratch disks at the host's disk names, with this
machine's (or --sysroot's) mkfs/lvm/mdadm/cryptsetup and the host's VG/LV names, array
name and UUID, LUKS UUID and filesystem UUID/label; a second short boot reads the dump
back. This machine runs none of those tools and mounts nothing. The stack comes from
the build's storage discovery (with --image: of the request recorded in the image).
\b
ssh targets: the stand-in is a private sshd on 127.0.0.1. The image trusts only the
real server's host key, so the image booted is the image under test rebuilt with the
stand-in's destination (root@10.0.2.100), key, host key and a scratch path, every other
setting unchanged; the report's stand-in line names each substitution. With --image the
build request is recovered from the image (its kdump.conf and manifest).
\b
--real-target (nfs and ssh): after you confirm (or --yes), the guest dumps to the
configured server through QEMU user networking (not restricted; a server on this
machine's loopback is relayed from 10.0.2.100 instead), into a new folder
PATH/mkkdumprd-test-<UTC time>-<8 hex>; the image is rebuilt with that path only. ssh:
the folder must not exist before; the vmcore is read back and the folder removed over
ssh with the configured key and this machine's known_hosts. nfs: a second short guest
boot mounts the export as the image does, copies the folder out and removes it. The
report says whether the removal worked.
\b
The report's capture memory is MemTotal minus the least MemAvailable the capture image
sampled, once a second from its /init to the final action (kdump.memstat on the capture
command line turns the sampler on).
\b
Exit status: 0 a complete vmcore was read back and makedumpfile --dump-dmesg found the
crash in it; 1 the dump path failed (the report names the step); 2 usage errors.
"""


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.replace(",", " ").split() if x)
    return tuple(dict.fromkeys(out))


@click.command(name="test", epilog=_EPILOG)
@click.option("--vm", is_flag=True,
              help="Crash a QEMU guest instead of this machine (the safe proof).")
@click.option("--yes", is_flag=True,
              help="Without --vm: crash this machine without asking; with --real-target: "
                   "write to the real server without asking (needed when stdin is not a "
                   "terminal).")
@click.option("--kernel", "kernel_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Kernel to boot and load as capture kernel (default: this machine's, "
                   "for --kver).")
@click.option("--kver", help="Kernel version (default: the image's, else the running one).")
@click.option("--kmoddir", type=click.Path(path_type=Path, file_okay=False),
              help="That kernel's module folder (default /lib/modules/KVER).")
@click.option("--image", type=click.Path(path_type=Path, dir_okay=False),
              help="Capture image to prove (default: one built now from -c/--target).")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              help="kdump.conf for the image built when --image is not given.")
@click.option("--target", "target_spec", metavar="SPEC",
              help="Dump target for that build (as `mkkdumprd build --target`).")
@click.option("--sysroot", type=click.Path(path_type=Path, file_okay=False),
              help="Take the image's binaries and the guest's storage tools (mkfs.xfs, "
                   "mkfs.btrfs, lvm, mdadm, cryptsetup for a scratch stack) from this root "
                   "instead of / (as `mkkdumprd build --sysroot`).")
@click.option("--add-drivers", multiple=True, metavar="M,..",
              help="Kernel modules to add to that build (as `mkkdumprd build`).")
@click.option("--hostonly/--no-hostonly", default=True,
              help="Host-only build (default) or one for another machine (a VM kernel).")
@click.option("--mem", "memory_mb", type=click.IntRange(256, 65536), default=1024,
              show_default=True, help="Guest RAM in MiB.")
@click.option("--crashkernel", metavar="SIZE",
              help="Reservation of the guest (default: what `mkkdumprd crashkernel "
                   "recommend` gives for the guest's RAM, the image and the kernel).")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto",
              show_default=True, help="QEMU accelerator; auto is KVM when /dev/kvm works.")
@click.option("--disk-bus", type=click.Choice(["virtio", "scsi", "nvme", "sata"]),
              help="Bus of the scratch disk (default: one the image has a driver for).")
@click.option("--target-timeout", type=click.IntRange(1, 3600),
              help="Seconds the capture image waits for the target (kdump.timeout=N; "
                   "default: the image's own).")
@click.option("--timeout", type=click.IntRange(30, 86400), default=900, show_default=True,
              help="Seconds the whole guest run may take.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the console log, scratch disks and vmcore go (default: a new "
                   "mkkdumprd-test-* folder in $TMPDIR, kept).")
@click.option("--measure-crashkernel", is_flag=True,
              help="Also bisect the smallest crashkernel= with which the image still dumps "
                   "(one guest boot per probe) and compare it with this machine's.")
@click.option("--low", "low_mb", type=click.IntRange(16, 65536), default=64, show_default=True,
              help="--measure-crashkernel: smallest reservation tried, MiB.")
@click.option("--high", "high_mb", type=click.IntRange(16, 65536), default=512,
              show_default=True, help="--measure-crashkernel: largest reservation tried, MiB.")
@click.option("--step", "step_mb", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="--measure-crashkernel: resolution, MiB.")
@click.option("--real-target", is_flag=True,
              help="Dump to the configured nfs or ssh server itself (into a mkkdumprd-test-* "
                   "folder, removed afterwards) instead of a stand-in; asks first, --yes for "
                   "scripts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def test_cmd(vm: bool, yes: bool, kernel_file: Path | None, kver: str | None,
             kmoddir: Path | None, image: Path | None, config_path: Path | None,
             target_spec: str | None, sysroot: Path | None, add_drivers: tuple[str, ...],
             hostonly: bool, memory_mb: int, crashkernel: str | None, accel: str,
             disk_bus: str | None,
             target_timeout: int | None, timeout: int, workdir: Path | None,
             measure_crashkernel: bool, low_mb: int, high_mb: int, step_mb: int,
             real_target: bool, as_json: bool) -> None:
    """Prove that a crash gives a dump.

    With --vm: boot the kernel in QEMU with a first stage that loads the capture image
    with mkkdumprd's own loader (kexec_file_load, the command line `start` uses), crash
    the guest with sysrq, and watch the capture image save a vmcore to a stand-in for
    its target: scratch disks with the same filesystem type, UUID/label and block stack
    (local), a scratch raw disk read back with savecore (raw), nfs-ganesha on 127.0.0.1
    (nfs), or a private sshd on 127.0.0.1 with the image rebuilt for it (ssh). The real
    target is never touched unless --real-target is given and confirmed. The report gives
    the verdict, the step that failed (stand-in could not be made, capture kernel did not
    load / did not boot, driver
    for the target missing, target not found within the timeout, collector failed,
    incomplete) with the console lines that show it, the time from panic to saved dump,
    the vmcore size and the capture kernel's peak memory use; QEMU's output stays in the
    console log it names.

    Without --vm, as kdumpctl test: crash THIS machine now (sysrq c) so the loaded
    capture kernel saves a dump. Asks first on a terminal; refuses without --yes
    otherwise.
    """
    if not vm:
        for flag, given in (("--measure-crashkernel", measure_crashkernel),
                            ("--real-target", real_target)):
            if given:
                raise UsageError(f"{flag} needs --vm")
        _crash_this_machine(yes)
        return
    from mkkdumprd.vmtest import qemu

    qemu.qemu_binary()
    if low_mb > high_mb:
        raise UsageError(f"--low {low_mb} is above --high {high_mb}")
    work = workdir or Path(tempfile.mkdtemp(prefix="mkkdumprd-test-"))
    work.mkdir(parents=True, exist_ok=True)
    root = Host(sysroot) if sysroot else Host.this_machine()
    proof, recommended_mb = _proof(kernel_file, kver, kmoddir, image, config_path,
                                   target_spec, _split(add_drivers), hostonly, memory_mb,
                                   crashkernel, qemu.accel(accel), disk_bus, target_timeout,
                                   timeout, work, quiet=as_json, root=root)
    if real_target:
        if measure_crashkernel:
            raise UsageError("--measure-crashkernel boots once per probe: not with "
                             "--real-target")
        _confirm_real_target(proof.image, yes)
        proof = dataclasses.replace(proof, real_target=True)
    from mkkdumprd.vmtest.run import prove

    result = prove(proof)
    if measure_crashkernel:
        from mkkdumprd.vmtest.measure import measure

        if not as_json:
            click.echo(f"measuring the smallest crashkernel= ({low_mb}M..{high_mb}M, "
                       f"{step_mb}M steps):")
        found = measure(proof, low_mb, high_mb, step_mb, recommended_mb,
                        (lambda _: None) if as_json else click.echo,
                        known={int(proof.crashkernel.removesuffix("M")): result})
        result = dataclasses.replace(result, measure=found)
    click.echo(json.dumps(result.as_json(), indent=2) if as_json else result.render())
    if not result.passed:
        sys.exit(1)


def _proof(kernel_file: Path | None, kver: str | None, kmoddir: Path | None,
           image: Path | None, config_path: Path | None, target_spec: str | None,
           add_drivers: tuple[str, ...], hostonly: bool, memory_mb: int,
           crashkernel: str | None, accel: str, disk_bus: str | None,
           target_timeout: int | None, timeout: int, work: Path, quiet: bool,
           root: Host | None = None) -> tuple[Proof, int]:
    from mkkdumprd.arch import host_arch, load_arch
    from mkkdumprd.assemble.freshness import read_manifest
    from mkkdumprd.crashkernel.size import MiB, parse_size
    from mkkdumprd.loader import locate
    from mkkdumprd.vmtest.run import Proof
    from mkkdumprd.vmtest.sizing import recommended

    this = Host.this_machine()
    arch = load_arch(host_arch())
    if arch.name != "x86_64":
        raise UsageError(f"`mkkdumprd test --vm` boots x86_64 guests only so far; this "
                         f"machine is {arch.name}")
    if image is not None:
        if not image.is_file():
            raise UsageError(f"capture image {image} does not exist; fix --image or leave "
                             "it out to build one")
        man = read_manifest(image) or {}
        kver = kver or (str(man["kver"]) if isinstance(man.get("kver"), str) else None)
    running = os.uname().release
    kver = kver or running
    # This machine's own kernel: its capture kernel gets this machine's command line.
    own = kernel_file is None and kver == running
    if kernel_file is None:
        kernel_file = this.path(locate.find_kernel(this, arch, kver))
    if not kernel_file.is_file():
        raise UsageError(f"kernel {kernel_file} does not exist; pass --kernel FILE")
    kmoddir = kmoddir or Path(f"/lib/modules/{kver}")
    request = None
    if image is None:
        request = _build(work / "capture.img", config_path, target_spec, kver, kmoddir,
                         arch.name, add_drivers, hostonly, quiet, root)
        image = work / "capture.img"
    rec = recommended(arch, memory_mb, image, kernel_file)
    try:
        size = parse_size(crashkernel) if crashkernel else rec.chosen
    except ValueError as exc:
        raise UsageError(f"--crashkernel: {exc}") from None
    if size <= 0 or size >= memory_mb * MiB // 2:
        raise UsageError(f"crashkernel={size >> 20}M does not fit a {memory_mb} MiB guest; "
                         "give --mem more or --crashkernel less")
    # As `start` composes it: this machine's settings files (the guest's loader reads the
    # copies), their base or else this machine's /proc/cmdline.
    settings = _cmdline_settings(this) if own else ()
    base = (locate.proc_cmdline(this)
            if own and read_settings(this).base is None else None)
    append = (f"kdump.timeout={target_timeout}",) if target_timeout else ()
    proof = Proof(kernel=kernel_file, image=image, workdir=work,
                  crashkernel=f"{size >> 20}M", memory_mb=memory_mb, accel=accel,
                  kmoddir=kmoddir if kmoddir.is_dir() else None, base_cmdline=base,
                  cmdline_settings=settings,
                  append=append, bus=disk_bus, timeout=float(timeout), request=request,
                  tools=root)
    return proof, rec.chosen >> 20


def _cmdline_settings(host: Host) -> tuple[tuple[str, Path], ...]:
    """(path, file) of each capture command line settings file this machine has."""
    return tuple((str(path), host.real(path)) for path, _roles in SOURCES
                 if host.is_file(path))


def _build(out: Path, config_path: Path | None, target_spec: str | None, kver: str,
           kmoddir: Path, arch: str, add_drivers: tuple[str, ...], hostonly: bool,
           quiet: bool, root: Host | None = None) -> BuildRequest:
    from mkkdumprd.assemble.builder import BuildRequest
    from mkkdumprd.assemble.rebuild_policy import Overwrite, ensure_image
    from mkkdumprd.config.kdumpconf import load_kdump_conf
    from mkkdumprd.config.target_spec import apply_target, parse_target_spec

    view = root or Host.this_machine()
    config = load_kdump_conf(config_path, default=view.path("/etc/kdump.conf"))
    if target_spec is not None:
        target, path = parse_target_spec(target_spec)
        config = apply_target(config, target, path)
    req = BuildRequest(config=config, kver=kver, kmoddir=kmoddir, sysroot=view, machine=view,
                       arch=arch, hostonly=hostonly, add_drivers=add_drivers, output=out)
    ensured = ensure_image(req, Overwrite.ALWAYS)
    if ensured.result is not None:
        for w in ensured.result.warnings:
            click.echo(f"mkkdumprd: warning: {w}", err=True)
    if not quiet:
        click.echo(f"built {out} for {kver}")
    return req


def _confirm_real_target(image: Path, yes: bool) -> None:
    from mkkdumprd.vmtest.real_target import confirm
    from mkkdumprd.vmtest.run import image_target

    t = image_target(image)
    what = (f"--real-target: the guest writes a test dump to {t.get('kind')} "
            f"{t.get('server')} under {t.get('path')}/mkkdumprd-test-<time>-<random>, "
            "through QEMU user networking; that folder is removed afterwards.")
    confirm(what, yes, sys.stdin.isatty(),
            lambda prompt: click.confirm(prompt, default=False, err=True))


def _crash_this_machine(yes: bool) -> None:
    from mkkdumprd.loader import live
    from mkkdumprd.loader import status as loader_status

    root = Path("/")
    st = loader_status.read_status(Host(root))
    if not st.loaded:
        raise OperationError("no crash kernel is loaded, so a crash now would give no dump; "
                             "run `mkkdumprd start` first (or prove it safely with "
                             "`mkkdumprd test --vm`)")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to crash this machine without --yes (stdin is not a "
                             "terminal); `mkkdumprd test --vm` proves the dump path in a VM")
        click.confirm("This crashes THIS machine now (sysrq c); the capture kernel then "
                      "saves a dump and the machine reboots. Continue?", abort=True)
    kernel = live.kernel_for(root)
    if kernel is None:
        raise OperationError("the running kernel is not reachable from here")
    click.echo("crashing this machine now (sysrq c)")
    kernel.crash()
    raise OperationError("still running after sysrq c; the crash did not happen")


COMMANDS: list[click.Command] = [test_cmd]
