"""Crash cycles on other architectures: QEMU TCG guests booted from a foreign Debian root.

The x86 harness (qemu.py, first_stage.py) runs the host's own binaries in the guest; here
everything the guest runs comes from the arch's sysroot (tests/support/foreign_sysroot.py):
the Debian kernel, the static busybox and kexec-tools with its libraries for the first
stage, and the capture image built by `mkkdumprd build --arch A --sysroot DIR`.

Debian kernels off x86 have no kexec_file_load (ENOSYS), so the first stage loads the
capture kernel the way the product's fallback does (mkkdumprd/loader/kexec_tools.py): the
very argv `load_command` returns for the product's own load plan, worked out on the host
from a fake root that mirrors the guest (its /proc/cmdline, reservation and /boot files).
On arm64 without `_text` in kallsyms, the guest's /init adds the line as the product does
(`kallsyms_with_text`) and prints both symbols, so the test can check they agree.
Facts: /work/shared/reference/multiarch-kdump.md.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.arch import load_arch
from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.spec import ImageSpec, dir_entry, file_entry, symlink_entry
from mkkdumprd.loader import kexec_tools
from mkkdumprd.loader import load as loader
from tests.support.foreign_sysroot import Sysroot
from tests.vm.harness.first_stage import CHECK_LOADED_AND_CRASH

from .disks import make_ext4, tree
from .images import init_entry, write_initramfs
from .qemu import VM, Drive, VMError, VMSpec

LOADED = "MKKDUMPRD-MULTIARCH: capture kernel loaded, crashing now"
FAILED = "MKKDUMPRD-MULTIARCH: loading the capture kernel FAILED"
STEXT = "MKKDUMPRD-MULTIARCH: _stext"
TEXT = "MKKDUMPRD-MULTIARCH: _text"
# busybox-static's applets the first stage uses (the foreign binary cannot be asked --list).
APPLETS = ("sh", "mount", "cat", "echo", "grep", "cut", "poweroff", "uname", "sleep",
           "printf")
M = 1 << 20


@dataclass(frozen=True)
class ArchVM:
    qemu: str               # binary
    package: str            # Debian package that has it
    machine: tuple[str, ...]
    console: str


ARCH_VMS: dict[str, ArchVM] = {
    # pauth-impdef: plain `-cpu max` spends 2.5x the time in QARMA emulation (reference §3.2).
    "aarch64": ArchVM("qemu-system-aarch64", "qemu-system-arm",
                      ("-machine", "virt", "-cpu", "max,pauth-impdef=on"), "ttyAMA0"),
    "ppc64le": ArchVM("qemu-system-ppc64", "qemu-system-ppc", ("-machine", "pseries"), "hvc0"),
    "riscv64": ArchVM("qemu-system-riscv64", "qemu-system-misc",
                      ("-machine", "virt", "-cpu", "rv64"), "ttyS0"),
    "s390x": ArchVM("qemu-system-s390x", "qemu-system-misc",
                    ("-machine", "s390-ccw-virtio", "-cpu", "max"), "ttysclp0"),
}


def qemu_for(arch: str) -> str:
    av = ARCH_VMS[arch]
    path = shutil.which(av.qemu)
    if path is None:
        raise VMError(f"{av.qemu} not found on PATH; run dev/setup (apt package {av.package})")
    return path


@dataclass(frozen=True)
class ForeignVMSpec(VMSpec):
    arch: str = "aarch64"

    def argv(self) -> list[str]:
        av = ARCH_VMS[self.arch]
        args = [qemu_for(self.arch), *av.machine, "-accel", "tcg", "-smp", "1",
                "-nographic", "-no-reboot", "-m", str(self.memory_mb),
                "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", self.append, "-nic", "none"]
        for d in self.drives:
            args += ["-drive", f"file={d.path},format={d.fmt},if=virtio,cache=unsafe"]
        return args + list(self.extra_args)


def first_kernel_append(arch: str, crashkernel: str) -> str:
    # panic=-1 with -no-reboot: a first kernel that fails to kexec ends the VM at once.
    return f"console={ARCH_VMS[arch].console} crashkernel={crashkernel} panic=-1"


@dataclass(frozen=True)
class ProductLoad:
    argv: tuple[str, ...]
    cmdline: str


def product_load(sysroot: Sysroot, first_append: str, reserved: int) -> ProductLoad:
    """The kexec-tools argv the product's loader runs in the guest after ENOSYS.

    plan_load + load_command on a fake root mirroring the guest: its /proc/cmdline, the
    reservation in /sys, the kernel and capture image at their /boot paths, kexec in /sbin.
    """
    arch = load_arch(sysroot.arch)
    with tempfile.TemporaryDirectory(prefix="mkkdumprd-guest-") as d:
        root = Path(d)
        for rel, text in (("proc/cmdline", first_append + "\n"),
                          ("proc/sys/kernel/osrelease", sysroot.kver + "\n"),
                          ("sys/kernel/kexec_crash_size", f"{reserved}\n"),
                          ("boot/vmlinuz", "x"), ("boot/capture.img", "x"),
                          ("sbin/kexec", "")):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        host = Host(root)
        plan = loader.plan_load(host, arch, kernel="/boot/vmlinuz",
                                initrd="/boot/capture.img")
        kexec = kexec_tools.find_kexec(host)
        assert kexec is not None
        cmd = kexec_tools.load_command(host, kexec, arch.name, plan.kernel, plan.initrd,
                                       plan.cmdline)
    return ProductLoad(cmd.argv, plan.cmdline)


_TEXT_FIX = f"""
# The product's kallsyms_with_text: _text = _stext rounded down to 2 MiB (arm64 only).
if [ "$(uname -m)" = aarch64 ] && ! grep -q ' _text$' /proc/kallsyms; then
    st=$(grep ' _stext$' /proc/kallsyms | cut -d' ' -f1)
    pre=${{st%??????}}; six=${{st#$pre}}; d=${{six%?????}}
    tx=$pre$(printf %x $((0x$d & 14)))00000
    echo "{STEXT} $st"
    echo "{TEXT} $tx"
    {{ echo "$tx T _text"; cat /proc/kallsyms; }} > /run/kallsyms
    mount --bind /run/kallsyms /proc/kallsyms
fi
"""

_INIT = """#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
reserved=$(cat /sys/kernel/kexec_crash_size)
echo "MKKDUMPRD-MULTIARCH: first kernel up on $(uname -m), $reserved bytes reserved"
{text_fix}
{kexec}
""" + CHECK_LOADED_AND_CRASH.replace("{tag}", "MKKDUMPRD-MULTIARCH")


def build_first_stage(sysroot: Sysroot, capture_image: Path, load: ProductLoad,
                      out: Path) -> Path:
    """The first-stage initramfs, every binary from the sysroot (arch-checked)."""
    view = Host(sysroot.root)
    spec = ImageSpec()
    bb = view.which("busybox")
    assert bb is not None, f"no busybox in {sysroot.root}"
    spec.extend(binary_entries([bb], view, "first-stage shell", machine=sysroot.arch))
    bindir = view.resolve(str(bb.parent))
    for a in APPLETS:
        spec.add(symlink_entry(f"{bindir}/{a}", "busybox", "busybox applet"))
    kexec = kexec_tools.find_kexec(view)
    assert kexec is not None, f"no kexec in {sysroot.root}"
    for e in binary_entries([kexec], view, "kexec-tools", machine=sysroot.arch):
        # The product's argv says /sbin/kexec; merged-/usr roots keep it in /usr/sbin.
        spec.add(e)
    # Merged-/usr roots (trixie, sid): /bin/sh and /sbin/kexec through the same links.
    for top in ("bin", "sbin", "lib"):
        link = view.path(f"/{top}")
        if link.is_symlink():
            spec.add(symlink_entry(f"/{top}", os.readlink(link), "merged-/usr link"))
    for d in ("/proc", "/sys", "/dev", "/tmp", "/run"):
        spec.add(dir_entry(d, "mount point"))
    spec.add(file_entry("/boot/vmlinuz", sysroot.kernel, "capture kernel", mode=0o644))
    spec.add(file_entry("/boot/capture.img", capture_image, "capture image", mode=0o644))
    text_fix = _TEXT_FIX if sysroot.arch == "aarch64" else ""
    spec.add(init_entry(_INIT.format(text_fix=text_fix, kexec=shlex.join(load.argv),
                                     failed=FAILED, loaded=LOADED)))
    return write_initramfs(spec, out, "none")


@dataclass(frozen=True)
class ForeignRun:
    console: str
    seconds: float
    load: ProductLoad


def foreign_crash_cycle(sysroot: Sysroot, capture_image: Path, disks: list[Path],
                        workdir: Path, crashkernel: str = "256M", memory_mb: int = 1024,
                        timeout: float = 300.0) -> ForeignRun:
    append = first_kernel_append(sysroot.arch, crashkernel)
    from mkkdumprd.crashkernel.size import parse_size

    load = product_load(sysroot, append, parse_size(crashkernel))
    first = build_first_stage(sysroot, capture_image, load, workdir / "first-stage.img")
    spec = ForeignVMSpec(sysroot.kernel, first, append, drives=tuple(Drive(d) for d in disks),
                         memory_mb=memory_mb, arch=sysroot.arch)
    with VM(spec, workdir / "console.log", timeout) as vm:
        m = vm.wait_for(f"{LOADED}|{FAILED}")
        if m.group(0) == FAILED:
            raise VMError(f"the first kernel could not load the capture image:\n{vm.tail()}")
        vm.wait_exit()
        return ForeignRun(vm.console(), vm.elapsed, load)


# Modules a virtio disk with ext4 needs in the capture kernel on every arch: the PCI
# transport (virt/pseries machines put if=virtio drives on PCI) and virtio-mmio for boards.
CAPTURE_DRIVERS = ("virtio_pci", "virtio_mmio", "virtio_blk", "ext4")


def build_cross_capture(sysroot: Sysroot, target: str, out: Path,
                        extra: tuple[str, ...] = (),
                        drivers: tuple[str, ...] = CAPTURE_DRIVERS) -> Path:
    """`mkkdumprd build --arch A --sysroot DIR` as a user runs it (the CLI, a subprocess).

    `extra` may carry --kver/--kmoddir for a kernel that is not the sysroot's.
    """
    from tests.vm.conftest import run_mkkdumprd

    kver = () if "--kver" in extra else ("--kver", sysroot.kver)
    argv = ["build", "--arch", sysroot.arch, "--sysroot", str(sysroot.root), *kver,
            "--no-hostonly", "--target", target,
            "--add-drivers", ",".join(drivers), *extra, "-o", str(out)]
    r = run_mkkdumprd(argv)
    if r.returncode != 0 or not out.exists():
        raise AssertionError(f"mkkdumprd {' '.join(argv)} failed (rc {r.returncode}):\n"
                             f"{r.stdout}{r.stderr}")
    return out


@dataclass(frozen=True)
class Ext4Dump:
    """A capture image cross-built to dump to /var/crash on a fresh ext4 disk, and the disk."""

    fs_uuid: str
    image: Path
    disk: Path


def ext4_dump_setup(sysroot: Sysroot, workdir: Path, extra: tuple[str, ...] = (),
                    drivers: tuple[str, ...] = CAPTURE_DRIVERS) -> Ext4Dump:
    """The set-up every multi-arch crash test shares: a new filesystem UUID, the capture
    image built for `local:UUID=...:/var/crash` (build_cross_capture's `extra`, `drivers`)
    and an empty ext4 disk with that UUID, all under `workdir`."""
    fs_uuid = str(uuid.uuid4())
    image = build_cross_capture(sysroot, f"local:UUID={fs_uuid}:/var/crash",
                                workdir / "capture.img", extra, drivers)
    disk = make_ext4(workdir / "disk.img", fs_uuid, content=tree(workdir / "fs", "var/crash"))
    return Ext4Dump(fs_uuid, image, disk)


# qemu-user binaries that run the arch's own makedumpfile on the host (package qemu-user).
QEMU_USER = {"aarch64": "qemu-aarch64", "ppc64le": "qemu-ppc64le", "riscv64": "qemu-riscv64",
             "s390x": "qemu-s390x", "x86_64": "qemu-x86_64"}


@dataclass(frozen=True)
class DumpCheck:
    vmcore: Path
    size: int
    machine: str            # utsname.machine from the kdump-compressed header
    release: str
    dmesg: str              # the kernel log makedumpfile extracted from the vmcore
    reader: str             # which makedumpfile could read it


def kdump_header(vmcore: Path) -> tuple[str, str]:
    """(release, machine) from a makedumpfile -l/-c/-p file: struct disk_dump_header."""
    head = vmcore.read_bytes()[:512]
    if head[:8] != b"KDUMP   ":
        raise AssertionError(f"{vmcore} is not a kdump-compressed file: {head[:8]!r}")

    def field_(i: int) -> str:   # new_utsname: six 65-byte fields after signature + version
        off = 12 + 65 * i
        return head[off:off + 65].split(b"\0", 1)[0].decode()
    return field_(2), field_(4)


def read_interp(path: Path) -> str | None:
    from mkkdumprd.elf.objects import read_elf

    return read_elf(path).interp


def read_dmesg(vmcore: Path, sysroot: Sysroot, workdir: Path) -> tuple[str, str]:
    """The vmcore's kernel log and the makedumpfile that read it.

    The host's x86 makedumpfile cannot translate another arch's addresses (it fails with
    "vtop4_x86_64: Can't get the symbol of init_level4_pgt"); the arch's own makedumpfile
    from the sysroot, run under qemu-user, can.
    """
    import subprocess

    from .images import require_tool

    host_out = workdir / "dmesg.host.txt"
    r = subprocess.run([require_tool("makedumpfile"), "--dump-dmesg", str(vmcore),
                        str(host_out)], capture_output=True, text=True)
    if r.returncode == 0 and host_out.exists():
        return host_out.read_text(errors="replace"), "host makedumpfile"
    qemu = shutil.which(QEMU_USER[sysroot.arch])
    if qemu is None:
        raise AssertionError(f"{QEMU_USER[sysroot.arch]} not found (apt package qemu-user; "
                             "run dev/setup): the host's makedumpfile cannot read this "
                             f"{sysroot.arch} vmcore: {(r.stdout + r.stderr).strip()[-300:]}")
    out = workdir / "dmesg.txt"
    view = Host(sysroot.root)
    mdf = view.which("makedumpfile")
    assert mdf is not None
    # The dynamic loader named explicitly, resolved inside the root: qemu's -L prefix does
    # not apply to an absolute symlink's target (ppc64el's /lib64/ld64.so.2 is one).
    interp = read_interp(view.path(mdf))
    argv = [qemu, "-L", str(sysroot.root)]
    if interp:
        argv.append(str(view.path(view.resolve(interp))))
    r = subprocess.run([*argv, str(view.path(mdf)), "--dump-dmesg", str(vmcore), str(out)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not out.exists():
        raise AssertionError(f"{sysroot.arch} makedumpfile --dump-dmesg {vmcore} under "
                             f"{qemu} failed (rc {r.returncode}): {r.stdout}{r.stderr}")
    return out.read_text(errors="replace"), f"{sysroot.arch} makedumpfile under qemu-user"


def check_dump(disk: Path, workdir: Path, sysroot: Sysroot, console: str,
               crashed_release: str | None = None) -> DumpCheck:
    """One complete dump on the ext4 disk, of the crashed kernel, readable by makedumpfile.

    `crashed_release`: uname -r of the kernel that crashed, when it is not the sysroot's.
    """
    from . import disks, vmcore

    dumps = disks.ext4_find_dumps(disk)
    assert len(dumps) == 1, f"dump dirs {dumps}; console:\n{console[-4000:]}"
    where = f"/var/crash/{dumps[0]}"
    files = {e.name: e for e in disks.ext4_ls(disk, where)}
    assert "vmcore" in files and "vmcore-dmesg.txt" in files, \
        f"{sorted(files)}; console:\n{console[-4000:]}"
    assert "vmcore-incomplete" not in files
    text = disks.ext4_dump(disk, f"{where}/vmcore-dmesg.txt",
                           workdir / "vmcore-dmesg.txt").read_text(errors="replace")
    vmcore.assert_sysrq_crash(text, "vmcore-dmesg.txt")
    vmc = disks.ext4_dump(disk, f"{where}/vmcore", workdir / "vmcore")
    release, machine = kdump_header(vmc)
    assert (release, machine) == (crashed_release or sysroot.kver, sysroot.arch), \
        (release, machine)
    size = vmc.stat().st_size
    assert size == files["vmcore"].size and size > 1 << 20
    dmesg, reader = read_dmesg(vmc, sysroot, workdir)
    vmcore.assert_sysrq_crash(dmesg, f"vmcore (read by the {reader})")
    return DumpCheck(vmc, size, machine, release, dmesg, reader)
