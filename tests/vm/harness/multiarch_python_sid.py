"""The project's loader in a riscv64 guest, with a Python that is not the host's version.

Debian has no riscv64 bookworm, so no python3.11 of that arch: the guest gets sid's python3
(3.13 or whatever sid's python3-minimal points at). Bytecode is version-specific, so the
host's compiled stdlib (multiarch_python.py's way for arm64/ppc64el/s390x) cannot be used.
Instead, on the host, the riscv64 interpreter itself runs under qemu-user (`qemu-riscv64`):
first the same tracer as for x86 (loader_trace.py: every loader path, fake root, fake
syscall; `uname -m` says riscv64 under qemu-user, so the riscv64 load plan is traced), then
py_compile of exactly the stdlib modules it reported. The guest gets those .pyc files at
the source's path (sourceless, nothing compiled under TCG), the interpreter and its
extensions with their libraries from the same root (ELF machine checked), and the loader's
own sources as for the other arches.

The root is its own sid riscv64 root (USERLAND of foreign_sysroot plus python3-minimal and
libpython3-stdlib), cached as $MKKDUMPRD_TEST_CACHE/sysroot-riscv64-python: one suite and
one snapshot for python, libc, busybox and makedumpfile, so python never meets an older
libc than it was built for. Its kernel is not Debian's: callers pair it with a custom one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, ImageSpec, dir_entry, file_entry, symlink_entry
from tests.support.debian_kernel import CACHE
from tests.support.foreign_sysroot import _SID, FLAVOURS, USERLAND, Sysroot, _Apt

from .images import init_entry, write_initramfs
from .multiarch import QEMU_USER, read_interp
from .multiarch_python import APPLETS
from .python_guest import LOADER_ROOT, REPO, TRACER, arch_data_entry

PYTHON_PACKAGES = ("python3-minimal", "libpython3-stdlib")
_SKIP = {"__main__", "sitecustomize", "_distutils_hack"}


def python_sysroot(arch: str = "riscv64") -> Path:
    """A sid root of `arch` with USERLAND and python3 (built once: ~1 min, ~100 MB)."""
    fl = FLAVOURS[arch]
    root = CACHE / f"sysroot-{arch}-python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".lock-sysroot-{arch}-python", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = root / ".ready"
        recipe = " ".join((*USERLAND, *PYTHON_PACKAGES)) + "\n"
        if not ready.exists() or ready.read_text() != recipe:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            base = CACHE / f"apt-{arch}-python"
            shutil.rmtree(base / "cache" / "archives", ignore_errors=True)
            apt = _Apt(base, fl.debarch, _SID)
            apt.update()
            for deb in apt.download_closure((*USERLAND, *PYTHON_PACKAGES)):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            for d in ("bin", "sbin", "lib"):
                if (root / "usr" / d).is_dir() and not (root / d).exists():
                    (root / d).symlink_to(f"usr/{d}")
            ready.write_text(recipe)
    return root


def with_kernel(root: Path, arch: str, kver: str, kernel: Path) -> Sysroot:
    return Sysroot(root=root, arch=arch, kver=kver, kernel=kernel)


def guest_python(root: Path) -> str:
    """/usr/bin/python3.N, the version python3 points at in `root`."""
    target = os.readlink(root / "usr/bin/python3")
    return f"/usr/bin/{Path(target).name}"


def _qemu_argv(root: Path, arch: str, binary: str) -> list[str]:
    qemu = shutil.which(QEMU_USER[arch])
    if qemu is None:
        raise AssertionError(f"{QEMU_USER[arch]} not found (apt package qemu-user; dev/setup)")
    view = Host(root)
    interp = read_interp(view.path(binary))
    argv = [qemu, "-L", str(root)]
    if interp:
        argv.append(str(view.path(view.resolve(interp))))
    return [*argv, str(view.path(binary))]


@dataclass(frozen=True)
class CompiledStdlib:
    python: str                     # guest path of the interpreter
    pyc: dict[str, Path]            # guest path of a stdlib module's .pyc -> host file
    extensions: tuple[str, ...]     # guest paths of the extension modules imported
    loader: tuple[Path, ...]        # the project's own modules imported (host sources)


def compiled_stdlib(root: Path, arch: str, kernel: Path, workdir: Path) -> CompiledStdlib:
    """Trace the loader with the root's python under qemu-user, then compile what it used."""
    py = guest_python(root)
    argv = _qemu_argv(root, arch, py)
    stdlib = root / "usr/lib" / Path(py).name
    scratch = Path(tempfile.mkdtemp(prefix="trace-", dir=workdir))
    env = {"PATH": "/usr/bin:/bin", "MKKDUMPRD_FORBID_KEXEC": "1"}
    r = subprocess.run([*argv, "-I", "-B", str(TRACER), str(REPO), str(kernel), str(scratch)],
                       capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        raise AssertionError(f"tracing the loader under {argv[0]} failed (rc {r.returncode}):"
                             f"\n{r.stderr[-3000:]}")
    mods: dict[str, dict[str, str | None]] = json.loads(r.stdout)
    sources: dict[str, str] = {}
    extensions: list[str] = []
    loader: set[Path] = set()
    for name, m in mods.items():
        file = Path(str(m["file"]))
        if name in _SKIP:
            continue
        if file.is_relative_to(REPO):
            loader.add(file)
            continue
        if not file.is_relative_to(stdlib):
            raise AssertionError(f"{name} comes from {file}, outside {stdlib}")
        guest = "/" + str(file.relative_to(root))
        if file.suffix == ".so":
            extensions.append(guest)
        elif file.suffix == ".py":
            sources[str(file)] = str(scratch / "pyc" / (guest.lstrip("/") + "c"))
    # Frozen modules (os, codecs, ...) are in the list as well: os.pyc is the landmark by
    # which the interpreter finds its stdlib.
    jobs = scratch / "compile.json"
    jobs.write_text(json.dumps(sources))
    code = ("import json, py_compile, sys\n"
            "for src, dst in json.load(open(sys.argv[1])).items():\n"
            "    py_compile.compile(src, cfile=dst, dfile=src, doraise=True)\n")
    r = subprocess.run([*argv, "-I", "-B", "-c", code, str(jobs)], capture_output=True,
                       text=True, timeout=600, env=env)
    if r.returncode != 0:
        raise AssertionError(f"py_compile under {argv[0]} failed: {r.stderr[-3000:]}")
    pyc = {"/" + str(Path(src).relative_to(root).with_suffix(".pyc")): Path(dst)
           for src, dst in sources.items()}
    if not any(f.is_relative_to(REPO / "mkkdumprd" / "loader") for f in loader):
        raise AssertionError(f"the trace shows no loader module: {sorted(mods)}")
    return CompiledStdlib(py, pyc, tuple(sorted(extensions)), tuple(sorted(loader)))


def build_sid_loader_first_stage(sysroot: Sysroot, capture_image: Path, out: Path,
                                 script: str, kernels: dict[str, Path],
                                 trace_kernel: Path) -> Path:
    """First stage: busybox, the root's python + traced stdlib, the loader, kernel, image."""
    view = Host(sysroot.root)
    arch = sysroot.arch
    std = compiled_stdlib(sysroot.root, arch, trace_kernel, out.parent)
    spec = ImageSpec()

    def add(entries: list[Entry]) -> None:
        for e in entries:
            if e.path not in spec:
                spec.add(e)

    bb = view.which("busybox")
    assert bb is not None, f"no busybox in {sysroot.root}"
    add(binary_entries([bb], view, "first-stage shell", machine=arch))
    bindir = view.resolve(str(bb.parent))
    add([symlink_entry(f"{bindir}/{a}", "busybox", "busybox applet") for a in APPLETS])
    for top in ("bin", "sbin", "lib"):
        link = view.path(f"/{top}")
        if link.is_symlink():
            add([symlink_entry(f"/{top}", os.readlink(link), "merged-/usr link")])
    add(binary_entries([std.python, *std.extensions], view, "the loader's interpreter",
                       machine=arch))
    add([symlink_entry("/usr/bin/python3", Path(std.python).name, "python3 on PATH")])
    add([file_entry(g, h, "stdlib module the loader imports", mode=0o644)
         for g, h in sorted(std.pyc.items())])
    add([file_entry(f"{LOADER_ROOT}/{p.relative_to(REPO)}", p, "mkkdumprd loader source",
                    mode=0o644) for p in std.loader])
    add([arch_data_entry(arch)])
    add([dir_entry(d, "mount point") for d in ("/proc", "/sys", "/dev", "/tmp", "/run")])
    for dest, src in kernels.items():
        add([file_entry(dest, src, "capture kernel", mode=0o644)])
    add([file_entry("/boot/capture.img", capture_image, "capture image", mode=0o644)])
    spec.add(init_entry(script))
    return write_initramfs(spec, out, "none")
