"""Foreign-architecture Debian roots for cross builds and multi-arch VM tests.

`foreign_sysroot("aarch64")` returns a directory holding Debian packages of that
architecture unpacked with `dpkg-deb -x` (busybox-static, makedumpfile, kexec-tools,
libc6 and their dependencies, and the kernel package the `linux-image-<flavour>`
metapackage points at, depmod'ed): what distro image builders and installers work on.

Packages come through a private apt state per architecture (its own lists, cache and
sources, `status=/dev/null`, `APT::Architectures` set on the command line), so the host's
dpkg architecture list and apt configuration are never touched. The result is cached in
$MKKDUMPRD_TEST_CACHE/sysroot-<arch> (default /var/cache/mkkdumprd-tests).
See /work/shared/reference/multiarch-kdump.md §1 for the recipe and mirror quirks.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian_kernel import CACHE

_BOOKWORM = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
_BOOKWORM_SECURITY = """
Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
_TRIXIE = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
_SID = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

USERLAND = ("busybox-static", "makedumpfile", "kexec-tools", "libc6")


@dataclass(frozen=True)
class Flavour:
    debarch: str
    kernel_meta: str            # linux-image-<flavour> metapackage
    userland_sources: str       # deb822 sources for busybox, makedumpfile, kexec, libc
    kernel_sources: str         # deb822 sources for the kernel
    kernel_file: str            # boot/<name>-KVER that QEMU and kexec take
    extra: tuple[str, ...] = ()  # more userland packages (with their Depends)


FLAVOURS: dict[str, Flavour] = {
    # python3.11 as on the bookworm host (aarch64, ppc64le): the guest runs the project's
    # loader with the host's stdlib bytecode and this root's interpreter and extensions.
    "aarch64": Flavour("arm64", "linux-image-arm64", _BOOKWORM + _BOOKWORM_SECURITY,
                       _BOOKWORM + _BOOKWORM_SECURITY, "vmlinuz",
                       ("python3.11-minimal", "libpython3.11-stdlib")),
    "x86_64": Flavour("amd64", "linux-image-amd64", _BOOKWORM + _BOOKWORM_SECURITY,
                      _BOOKWORM + _BOOKWORM_SECURITY, "vmlinuz"),
    # bookworm-security's ppc64el index fails its size check (reference §1): main only.
    "ppc64le": Flavour("ppc64el", "linux-image-powerpc64le", _BOOKWORM, _BOOKWORM, "vmlinux",
                       ("python3.11-minimal", "libpython3.11-stdlib")),
    # Debian's s390x kernels cannot dump (reference §5): the kernel here is unused, the
    # tests boot a custom one (tests/support/custom_kernel.py); userland as for ppc64le.
    "s390x": Flavour("s390x", "linux-image-s390x", _BOOKWORM + _BOOKWORM_SECURITY,
                     _BOOKWORM + _BOOKWORM_SECURITY, "vmlinuz",
                     ("python3.11-minimal", "libpython3.11-stdlib")),
    # bookworm has no riscv64; trixie has the kernel but no kexec-tools: userland from sid.
    "riscv64": Flavour("riscv64", "linux-image-riscv64", _SID, _TRIXIE, "vmlinux"),
}


@dataclass(frozen=True)
class Sysroot:
    root: Path
    arch: str
    kver: str
    kernel: Path        # the kernel file QEMU boots and kexec loads


class _Apt:
    """apt-get/apt-cache against a private state for one architecture and source set."""

    def __init__(self, base: Path, debarch: str, sources: str) -> None:
        self.base = base
        (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (base / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (base / "parts").mkdir(parents=True, exist_ok=True)
        (base / "parts" / "debian.sources").write_text(sources)
        self.opts = [
            f"-oAPT::Architecture={debarch}", f"-oAPT::Architectures={debarch}",
            f"-oDir::State::Lists={base / 'lists'}", f"-oDir::Cache={base / 'cache'}",
            "-oDir::State::status=/dev/null", "-oDir::Etc::SourceList=/dev/null",
            f"-oDir::Etc::SourceParts={base / 'parts'}", "-oDebug::NoLocking=1",
            "-oAcquire::Retries=3",
        ]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run([tool, *self.opts, *args], cwd=cwd, check=True,
                              capture_output=True, text=True).stdout

    def update(self) -> None:
        # A mirror mid-sync fails one index ("File has unexpected size", reference §1) and
        # apt exits 100 with the others fetched: carry on; a package that is then missing
        # fails later with apt's own message.
        try:
            self.run("apt-get", "update", "-q")
        except subprocess.CalledProcessError as exc:
            if "Some index files failed to download" not in (exc.stderr or ""):
                raise

    def kernel_package(self, meta: str) -> str:
        for line in self.run("apt-cache", "depends", meta).splitlines():
            m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
            if m:
                return m.group(1)
        raise RuntimeError(f"{meta} names no linux-image package in {self.base}")

    def download_closure(self, pkgs: tuple[str, ...]) -> list[Path]:
        """The packages and their Depends (no Recommends) as .debs in the private cache."""
        self.run("apt-get", "install", "-y", "-q", "--download-only",
                 "--no-install-recommends", *pkgs)
        return sorted((self.base / "cache" / "archives").glob("*.deb"))

    def download(self, pkg: str) -> Path:
        dest = self.base / "debs"
        dest.mkdir(exist_ok=True)
        self.run("apt-get", "download", "-q", pkg, cwd=dest)
        found = sorted(dest.glob(f"{pkg}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {pkg} left no .deb in {dest}")
        return found[-1]


def foreign_sysroot(arch: str) -> Sysroot:
    """The cached sysroot for `arch` (built on first use: a few hundred MB, ~1 min)."""
    fl = FLAVOURS[arch]
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / f"sysroot-{arch}"
    with open(CACHE / f".lock-sysroot-{arch}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = root / ".ready"
        recipe = " ".join((*USERLAND, *fl.extra, fl.kernel_meta)) + "\n"
        if not ready.exists() or ready.read_text() != recipe:
            _build(root, arch, fl)
            ready.write_text(recipe)
        kver = (root / ".kver").read_text().strip()
        return Sysroot(root=root, arch=arch, kver=kver,
                       kernel=root / "boot" / f"{fl.kernel_file}-{kver}")


def _build(root: Path, arch: str, fl: Flavour) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    user = _Apt(CACHE / f"apt-{arch}", fl.debarch, fl.userland_sources)
    user.update()
    debs = user.download_closure((*USERLAND, *fl.extra))
    kapt = user
    if fl.kernel_sources != fl.userland_sources:
        kapt = _Apt(CACHE / f"apt-{arch}-kernel", fl.debarch, fl.kernel_sources)
        kapt.update()
    pkg = kapt.kernel_package(fl.kernel_meta)
    debs.append(kapt.download(pkg))
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    _merge_usr_links(root)
    kver = pkg.removeprefix("linux-image-")
    subprocess.run(["depmod", "-b", str(root), kver], check=True, capture_output=True)
    (root / ".kver").write_text(kver + "\n")


def _merge_usr_links(root: Path) -> None:
    """Merged-/usr suites (trixie, sid) ship /usr/lib only; the ELF interpreter is /lib/..."""
    for d in ("bin", "sbin", "lib", "lib64"):
        top, usr = root / d, root / "usr" / d
        if usr.is_dir() and not top.exists():
            top.symlink_to(f"usr/{d}")
