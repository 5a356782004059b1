"""load / unload: put the plan together, check the reservation, call the syscall.

`plan_load` only reads (through a Host); `execute_load` opens the files, unwraps the
kernel when the arch needs it, and calls the kernel's syscall (a `live.Kernel`, which only
`live.kernel_for` hands out for the running system); `--dry-run` and a `--root` that is not
the running system stop after the plan, and `describe` prints everything the syscall would
get.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from mkkdumprd.arch import ArchInfo
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.loader import (
    capture_cpus,
    crypt_keys,
    kernel_image,
    kexec_tools,
    locate,
    status,
)
from mkkdumprd.loader.cmdline import Word
from mkkdumprd.loader.cmdline_settings import capture_words, read_settings
from mkkdumprd.loader.kexec import (
    KEXEC_FILE_NO_INITRAMFS,
    KEXEC_FILE_ON_CRASH,
    KEXEC_FILE_UNLOAD,
    cmdline_bytes,
    errno_message,
)
from mkkdumprd.loader.live import Kernel, same_root
from mkkdumprd.loader.trust import check_capture_image

NO_RESERVATION = (
    "no memory is reserved for the crash kernel (crashkernel= is missing from the kernel "
    "command line); run `mkkdumprd crashkernel recommend` and `crashkernel apply`, then reboot"
)


@dataclass(frozen=True)
class LoadPlan:
    arch: ArchInfo
    kver: str
    kernel: PurePosixPath
    initrd: PurePosixPath | None
    cmdline: str
    flags: int
    reserved: int
    words: tuple[Word, ...] = ()        # the cmdline's words with their origins
    notes: tuple[str, ...] = ()         # settings read but not applied

    def word_origins(self) -> list[dict[str, str]]:
        return [{"word": w.text, "from": w.origin} for w in self.words]

    def describe(self, host: Host) -> str:
        _, length = cmdline_bytes(self.cmdline)
        info = kernel_image.runtime_size(host.path(self.kernel))
        names = [n for bit, n in ((KEXEC_FILE_UNLOAD, "KEXEC_FILE_UNLOAD"),
                                  (KEXEC_FILE_ON_CRASH, "KEXEC_FILE_ON_CRASH"),
                                  (KEXEC_FILE_NO_INITRAMFS, "KEXEC_FILE_NO_INITRAMFS"))
                 if self.flags & bit]
        lines = [
            f"kexec_file_load (syscall {self.arch.syscall_nr} on {self.arch.name}):",
            f"  kernel_fd   {self.kernel} ({info.detail})",
            f"  initrd_fd   {self.initrd if self.initrd else '-1 (no initramfs)'}",
            f"  cmdline_len {length} (including the trailing NUL)",
            f"  cmdline     {self.cmdline}",
            f"  flags       {self.flags:#x} ({' | '.join(names)})",
            f"  reserved    {self.reserved} bytes",
        ]
        if self.words:
            lines.append("  cmdline words and where each came from:")
            width = max(len(w.text) for w in self.words)
            lines += [f"    {w.text:<{width}}  {w.origin}" for w in self.words]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def check_reservation(host: Host) -> int:
    size = status.reserved_bytes(host)
    if size is None:
        raise OperationError(
            "this kernel has no crash dump support (/sys/kernel/kexec_crash_size is missing: "
            "CONFIG_KEXEC_CORE/CRASH_DUMP off); boot a kernel with kdump support")
    if size <= 0:
        raise OperationError(NO_RESERVATION)
    return size


def _given(path: str) -> PurePosixPath:
    """A path from the command line: relative ones are relative to the current directory."""
    return PurePosixPath(os.path.abspath(path))


def plan_load(host: Host, arch: ArchInfo, *, kver: str | None = None,
              kernel: str | None = None, initrd: str | None = None, no_initrd: bool = False,
              cmdline: str | None = None, append: Sequence[str] = ()) -> LoadPlan:
    reserved = check_reservation(host)
    kver = kver or locate.running_kver(host)
    kpath = _given(kernel) if kernel else locate.find_kernel(host, arch, kver)
    if not host.is_file(kpath):
        raise UsageError(
            f"kernel image {kpath} does not exist; pass an existing file with --kernel")
    ipath: PurePosixPath | None = None
    if not no_initrd:
        ipath = _given(initrd) if initrd else locate.default_image(host, kver)
        if not host.is_file(ipath):
            raise UsageError(
                f"capture image {ipath} does not exist; build it with `mkkdumprd --kver {kver} "
                f"-o {ipath}` or pass --initrd")
    settings = read_settings(host)
    proc = locate.proc_cmdline(host) if cmdline is None and settings.base is None else ""
    words = capture_words(proc, arch.name, arch.cmdline_remove, arch.cmdline_append,
                          settings, cmdline, append)
    words = capture_cpus.cpu_words(
        words, host, arch_max=arch.max_cpus, disable_boot_cpu=arch.disable_boot_cpu,
        reserved=reserved, percpu=arch.percpu,
        needed_one=lambda: _needed_at_one_cpu(host, arch, kpath, ipath))
    final = " ".join(w.text for w in words)
    flags = KEXEC_FILE_ON_CRASH | (KEXEC_FILE_NO_INITRAMFS if ipath is None else 0)
    return LoadPlan(arch, kver, kpath, ipath, final, flags, reserved, tuple(words),
                    settings.notes)


def _needed_at_one_cpu(host: Host, arch: ArchInfo, kernel: PurePosixPath,
                       initrd: PurePosixPath | None) -> int | None:
    """The crashkernel estimate for this kernel and image at nr_cpus=1 (recommend.py), or,
    where the image cannot be read (a bare python3 has no zstandard), capture_cpus'
    rough bound from the two files' sizes; None when neither can be had."""
    if initrd is None:
        return None
    try:
        # Not at import time: the loader alone runs on the standard library (guests).
        from mkkdumprd.crashkernel.fit import reservation_fit

        fit = reservation_fit(host, arch, kernel, initrd, "nr_cpus=1")
        if fit is not None:
            return fit.needed
    except ImportError:
        pass
    try:
        info = kernel_image.runtime_size(host.path(kernel))
        ksize = info.runtime_size or host.stat(kernel).st_size
        isize = host.stat(initrd).st_size
    except (OSError, ValueError):       # ImageFormatError is a ValueError
        return None
    return capture_cpus.rough_need(ksize, isize, dynamic=arch.kernel_dynamic,
                                   percpu=arch.percpu)


def _preflight_fit(plan: LoadPlan, host: Host, info: kernel_image.KernelInfo) -> None:
    """Refuse a load that cannot fit before the kernel says EADDRNOTAVAIL less clearly."""
    ksize = info.runtime_size or host.stat(plan.kernel).st_size
    isize = host.stat(plan.initrd).st_size if plan.initrd else 0
    if ksize + isize > plan.reserved:
        raise OperationError(
            f"the kernel ({ksize >> 20} MiB in memory) and {plan.initrd} ({isize >> 20} MiB) "
            f"do not fit in the {plan.reserved >> 20} MiB crashkernel= reservation; run "
            "`mkkdumprd crashkernel recommend`, then `mkkdumprd crashkernel apply` and reboot")


PATH_FILE = "kexec_file_load"
PATH_LEGACY = "kexec_load"


def _own_system(host: Host, kernel: Kernel) -> None:
    # The plan's files and the record are read and written under host.root: loading them
    # into a kernel that runs another system would be loading the wrong files.
    if not same_root(host.root, kernel.root):
        raise OperationError(
            f"refusing to use the kernel of the system at {kernel.root} for the files under "
            f"{host.root}")


def execute_load(plan: LoadPlan, host: Host, kernel: Kernel) -> dict[str, Any]:
    """Load the crash kernel; returns (and records) what was loaded and how.

    kexec_file_load first; when the kernel has none (ENOSYS), kexec_load through
    kexec-tools (`kernel.runner` runs it; tests pass a fake).
    """
    _own_system(host, kernel)
    syscall = kernel.syscall
    try:
        prepared = kernel_image.prepare(host.path(plan.kernel), plan.arch.formats,
                                        plan.arch.name)
    except kernel_image.ImageFormatError as exc:
        raise OperationError(str(exc)) from None
    ifd = -1
    try:
        _preflight_fit(plan, host, prepared.info)
        if plan.initrd is not None:
            ifd = os.open(host.path(plan.initrd), os.O_RDONLY | os.O_CLOEXEC)
            check_capture_image(ifd, str(plan.initrd), host.path(plan.initrd))
        raw, length = cmdline_bytes(plan.cmdline)
        luks = crypt_keys.volumes_for(host, _manifest(host, plan))
        try:
            with crypt_keys.handed_over(host, luks):
                syscall(plan.arch.syscall_nr, prepared.fd, ifd, length, raw, plan.flags)
            failed = 0
        except OSError as exc:
            failed = exc.errno or 0
            if failed != errno.ENOSYS:
                raise OperationError(
                    crypt_keys.load_error(exc, luks) or
                    errno_message(failed, str(plan.kernel),
                                  str(plan.initrd) if plan.initrd else None)) from None
    finally:
        os.close(prepared.fd)
        if ifd >= 0:
            os.close(ifd)
    path, how, note = PATH_FILE, prepared.how, None
    if failed == errno.ENOSYS:
        cmd = _legacy_load(plan, host, kernel.runner)
        path, how = PATH_LEGACY, "as is, by kexec-tools"
        note = (f"this kernel has no kexec_file_load (ENOSYS, CONFIG_KEXEC_FILE off): loaded "
                f"through kexec_load with {cmd.describe()}")
    record: dict[str, Any] = {
        "kernel": str(plan.kernel),
        "kernel_format": prepared.info.format,
        "kernel_how": how,
        "path": path,
        "note": note,
        "initrd": str(plan.initrd) if plan.initrd else None,
        "cmdline": plan.cmdline,
        "cmdline_words": plan.word_origins(),
        "kver": plan.kver,
        "arch": plan.arch.name,
        "reserved": plan.reserved,
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    status.write_record(host, record)
    return record


def _manifest(host: Host, plan: LoadPlan) -> dict[str, Any] | None:
    """The capture image's manifest (which LUKS volumes it opens), None when unreadable."""
    if plan.initrd is None:
        return None
    try:
        # Not at import time: the loader alone runs on the standard library (guests).
        # read_manifest imports the image reader (zstandard, libarchive) itself and takes
        # any failure for "no manifest": ask for it here, where a missing one is said.
        import mkkdumprd.image.reader  # noqa: F401
        from mkkdumprd.assemble.freshness import read_manifest
    except ImportError as exc:
        # No image reader here (a bare python3, e.g. a test guest's): which LUKS volumes
        # the image opens is unknown, and handing over none would leave the capture
        # kernel without keys, silently. crypt_keys decides and says so on stderr.
        return crypt_keys.unread_manifest(host, str(plan.initrd), str(exc))
    return read_manifest(host.path(plan.initrd))


def _legacy_load(plan: LoadPlan, host: Host,
                 runner: kexec_tools.KexecRunner) -> kexec_tools.LegacyCommand:
    what = f"loading {plan.kernel} as the crash kernel failed (ENOSYS)"
    kexec = kexec_tools.find_kexec(host)
    if kexec is None:
        raise OperationError(
            f"{what}: this kernel was built without CONFIG_KEXEC_FILE, so kexec_file_load is "
            f"missing, and the kexec_load fallback needs kexec-tools' `kexec -p`, which is "
            f"not installed; {kexec_tools.INSTALL_HINT}")
    cmd = kexec_tools.load_command(host, kexec, plan.arch.name, plan.kernel, plan.initrd,
                                   plan.cmdline)
    code, output = runner(host, cmd.argv, cmd.kallsyms)
    if code != 0:
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        raise OperationError(
            f"{what}, and the kexec_load fallback `{cmd.describe()}` failed too (exit "
            f"{code}: {last}); check the kernel file and the crashkernel= reservation")
    return cmd


def unload(host: Host, arch: ArchInfo, kernel: Kernel) -> None:
    """Unload the crash kernel (the fds are ignored with KEXEC_FILE_UNLOAD).

    A kernel without kexec_file_load (ENOSYS) is unloaded with `kexec -p -u`.
    """
    _own_system(host, kernel)
    try:
        kernel.syscall(arch.syscall_nr, -1, -1, 0, None, KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH)
    except OSError as exc:
        err = exc.errno or 0
        kexec = kexec_tools.find_kexec(host) if err == errno.ENOSYS else None
        if kexec is None:
            msg = errno_message(err, "", None, unload=True)
            if err == errno.ENOSYS:
                msg += f"; {kexec_tools.INSTALL_HINT}"
            raise OperationError(msg) from None
        cmd = kexec_tools.unload_command(kexec)
        code, output = kernel.runner(host, cmd.argv, None)
        if code != 0:
            raise OperationError(
                f"unloading the crash kernel with `{cmd.describe()}` failed (exit {code}: "
                f"{output.strip() or 'no output'})") from None
    status.clear_record(host)
