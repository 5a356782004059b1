"""kexec_file_load(2) through ctypes, and what each errno means for the user.

glibc has no wrapper, so the call goes through syscall(2). The real call is reachable only
from `real_syscall`, which refuses to run inside a test process (pytest imported) or when
MKKDUMPRD_FORBID_KEXEC is set: the test suite can never load or unload a kernel on the
machine that runs it. Callers take the syscall as a parameter (`SyscallFn`) so tests pass a
fake and production passes `real_syscall`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable

from mkkdumprd.errors import OperationError

KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4

# (syscall number, kernel fd, initrd fd, cmdline length incl. NUL, cmdline bytes, flags).
# Returns normally on success, raises OSError(errno) on failure.
SyscallFn = Callable[[int, int, int, int, bytes | None, int], None]


class KexecForbidden(OperationError):
    """The real syscall was reached from a test process or with MKKDUMPRD_FORBID_KEXEC set."""


def _forbidden() -> str | None:
    if "pytest" in sys.modules:
        return "pytest is imported"
    if os.environ.get("MKKDUMPRD_FORBID_KEXEC"):
        return "MKKDUMPRD_FORBID_KEXEC is set"
    return None


def real_syscall(nr: int, kernel_fd: int, initrd_fd: int, cmdline_len: int,
                 cmdline: bytes | None, flags: int) -> None:
    """The one place that calls kexec_file_load for real."""
    why = _forbidden()
    if why is not None:
        raise KexecForbidden(f"refusing to call kexec_file_load for real: {why}")
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_ulong,
                   ctypes.c_char_p, ctypes.c_ulong]
    ret = fn(nr, kernel_fd, initrd_fd, cmdline_len, cmdline, flags)
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def cmdline_bytes(cmdline: str) -> tuple[bytes, int]:
    """The buffer and the length the kernel wants: the length counts the trailing NUL."""
    raw = cmdline.encode() + b"\0"
    return raw, len(raw)


def errno_message(err: int, kernel: str, initrd: str | None, unload: bool = False) -> str:
    """One actionable sentence per errno kexec_file_load returns (kernel/kexec_file.c)."""
    what = "unloading the crash kernel" if unload else f"loading {kernel} as the crash kernel"
    msgs = {
        errno.EPERM: (
            f"{what} was refused (EPERM): run as root (CAP_SYS_BOOT); if you are root, the "
            "kernel is in lockdown (Secure Boot) and needs a kernel signed by a trusted key, "
            "or kernel.kexec_load_disabled / kexec_load_limit_panic forbid further loads"),
        errno.EKEYREJECTED: (
            f"{what} failed (EKEYREJECTED): the kernel's signature was rejected; Secure Boot "
            "or CONFIG_KEXEC_SIG_FORCE needs a kernel signed by a key in the .platform or "
            ".secondary keyring (use the distribution's signed vmlinuz)"),
        errno.ENOKEY: (
            f"{what} failed (ENOKEY): the key that signed the kernel is not in the .platform "
            "or .secondary keyring; use a kernel signed by your distribution or enrol its "
            "key with mokutil"),
        errno.EBADMSG: (
            f"{what} failed (EBADMSG): the kernel's signature is malformed; use the "
            "distribution's signed kernel image"),
        errno.ENODATA: (
            f"{what} failed (ENODATA): signature enforcement is on and the kernel carries no "
            "signature; use the distribution's signed kernel image"),
        errno.EADDRNOTAVAIL: (
            f"{what} failed (EADDRNOTAVAIL): the kernel and {initrd or 'the image'} do not fit "
            "in the crashkernel= reservation; run `mkkdumprd crashkernel recommend`, then "
            "`mkkdumprd crashkernel apply` and reboot"),
        errno.ENOEXEC: (
            f"{what} failed (ENOEXEC): this kernel does not accept the format of {kernel}; "
            "pass the arch's loadable format with --kernel (x86_64 bzImage, arm64 Image, "
            "ppc64le/riscv64 ELF vmlinux, s390x image)"),
        errno.EBUSY: (
            f"{what} failed (EBUSY): another kexec load, unload or crashkernel shrink is in "
            "progress; wait for it to finish and retry"),
        errno.ENOSYS: (
            f"{what} failed (ENOSYS): this kernel was built without CONFIG_KEXEC_FILE, so "
            "kexec_file_load is missing; use kexec-tools' `kexec -p` (kexec_load) instead"),
        errno.EINVAL: (
            f"{what} failed (EINVAL): the kernel refused the arguments (command line too long "
            "for the image, a compressed image, or a flag this kernel does not know); check "
            "`mkkdumprd load --dry-run` and dmesg"),
        errno.ENOMEM: (
            f"{what} failed (ENOMEM): the running kernel could not allocate memory for the "
            "load; free memory and retry"),
        errno.EFBIG: (
            f"{what} failed (EFBIG): {kernel} or {initrd or 'the image'} is larger than the "
            "kernel accepts; rebuild a smaller capture image"),
        errno.EACCES: (
            f"{what} failed (EACCES): an IMA or LSM policy refused to read the files; check "
            "the policy's kexec rules and the audit log"),
        errno.EBADF: f"{what} failed (EBADF): a file descriptor was invalid; this is a bug",
        errno.EOPNOTSUPP: (
            f"{what} failed (EOPNOTSUPP): this kernel's kexec_file_load has no crash-kernel "
            "support on this architecture; use kexec-tools' `kexec -p`"),
        errno.ENOENT: (
            f"{what} failed (ENOENT): {kernel} or {initrd or 'the image'} vanished while "
            "loading; check the paths"),
    }
    return msgs.get(err, f"{what} failed: {os.strerror(err)} (errno {err})")
