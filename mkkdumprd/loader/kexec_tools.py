"""The kexec_load fallback: kexec-tools' `kexec -p` for kernels without kexec_file_load.

Debian builds kexec_file_load only on x86: its arm64, ppc64el and riscv64 kernels answer
ENOSYS (`# CONFIG_KEXEC_FILE is not set`; multiarch-kdump.md §0). There the old syscall,
kexec_load, is the only way, and it needs user space to build the segments, purgatory and
ELF core headers: that is kexec-tools' job, so we run it rather than re-implement it.
kexec-tools takes the kernel file as shipped (Image, Image.gz, ELF vmlinux, flat riscv
Image) and adds elfcorehdr= itself, so it gets the original path and our capture cmdline.

arm64 quirk (multiarch-kdump.md §3.4): kexec-tools computes PAGE_OFFSET from `_text` in
/proc/kallsyms; Debian's 6.1 arm64 kernels lack KALLSYMS_ALL, so `_text` is missing and
the vmcore's ELF headers come out broken. We then run kexec in a private mount namespace
with a copy of kallsyms that has `_text` added, derived from `_stext`.

Running kexec is reachable only through `run_kexec`, which only `loader/live.py` hands out
(for the running system, never under --root or a dry run). It runs this machine's kexec,
never a binary from a root prefix, and refuses inside a test process (pytest imported) or
with MKKDUMPRD_FORBID_KEXEC set, as `kexec.real_syscall` does; tests pass a fake runner.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.host import Host
from mkkdumprd.loader.kexec import KexecForbidden, _forbidden

KALLSYMS = PurePosixPath("/proc/kallsyms")
FIXED_KALLSYMS = PurePosixPath("/run/mkkdumprd/kallsyms")
INSTALL_HINT = ("install kexec-tools (Debian/Ubuntu: apt install kexec-tools; "
                "Fedora/RHEL: dnf install kexec-tools; SUSE: zypper install kexec-tools)")
# arm64 loads the kernel image 2 MiB aligned (MIN_KIMG_ALIGN) and _text is its first
# byte, so _text is _stext rounded down to 2 MiB (_stext sits 64 KiB in, after the head).
_ARM64_KIMG_ALIGN = 2 << 20

# (argv, kallsyms text to show kexec instead of the real one or None) -> (exit code, output)
KexecRunner = Callable[[Host, Sequence[str], str | None], tuple[int, str]]


@dataclass(frozen=True)
class LegacyCommand:
    argv: tuple[str, ...]
    kallsyms: str | None    # replacement /proc/kallsyms (arm64 without _text), or None

    def describe(self) -> str:
        fix = " (in a private mount namespace, /proc/kallsyms with _text added)" \
            if self.kallsyms is not None else ""
        return " ".join(_quote(a) for a in self.argv) + fix


def _quote(word: str) -> str:
    if word and all(c.isalnum() or c in "-_=./:,+@%" for c in word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def find_kexec(host: Host) -> PurePosixPath | None:
    """kexec-tools' binary on the view's PATH or in the sbin directories it installs to."""
    found = host.which("kexec")
    if found is not None:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        p = PurePosixPath(d, "kexec")
        if host.is_file(p):
            return p
    return None


def kallsyms_with_text(text: str, arch: str) -> str | None:
    """The kallsyms kexec-tools needs on arm64 when `_text` is missing; None when fine."""
    if arch != "aarch64":
        return None
    stext = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "_text":
            return None
        if len(parts) >= 3 and parts[2] == "_stext" and stext is None:
            stext = int(parts[0], 16)
    if stext is None or stext == 0:   # no symbols, or addresses hidden (kptr_restrict)
        return None
    base = stext & ~(_ARM64_KIMG_ALIGN - 1)
    return f"{base:016x} T _text\n{text}"


def load_command(host: Host, kexec: PurePosixPath, arch: str, kernel: PurePosixPath,
                 initrd: PurePosixPath | None, cmdline: str) -> LegacyCommand:
    """`kexec -p -c KERNEL --initrd=I --command-line=C` (-c: the kexec_load syscall)."""
    argv = [str(kexec), "-p", "-c", str(kernel)]
    if initrd is not None:
        argv.append(f"--initrd={initrd}")
    argv.append(f"--command-line={cmdline}")
    kallsyms = None
    if arch == "aarch64":
        current = host.read_optional(KALLSYMS)
        if current is not None:
            kallsyms = kallsyms_with_text(current, arch)
    return LegacyCommand(tuple(argv), kallsyms)


def unload_command(kexec: PurePosixPath) -> LegacyCommand:
    return LegacyCommand((str(kexec), "-p", "-u"), None)


def run_kexec(host: Host, argv: Sequence[str], kallsyms: str | None) -> tuple[int, str]:
    """Run this machine's kexec-tools; returns (exit code, combined output)."""
    if os.path.realpath(host.root) != "/":
        raise KexecForbidden(f"refusing to run kexec-tools for the system under {host.root}: "
                             "only the running system's kernel is loaded")
    why = _forbidden()
    if why is not None:
        raise KexecForbidden(f"refusing to run kexec-tools for real: {why}")
    preexec = None
    if kallsyms is not None:
        fixed = host.path(FIXED_KALLSYMS)
        fixed.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(fixed, kallsyms, 0o600)
        preexec = _bind_over_kallsyms(str(fixed))
    proc = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          preexec_fn=preexec, check=False)
    return proc.returncode, proc.stdout


def _bind_over_kallsyms(fixed: str) -> Callable[[], None]:
    CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x20000, 0x1000, 0x4000, 0x40000

    def child() -> None:
        # In the forked child only: its own mount namespace, so nobody else sees the copy.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNS) != 0 or \
                libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0 or \
                libc.mount(fixed.encode(), str(KALLSYMS).encode(), None, MS_BIND, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot show kexec a /proc/kallsyms with _text: "
                               f"{os.strerror(err)}")
    return child
