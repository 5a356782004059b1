"""The project's own loader (`python3 -m mkkdumprd.loader`) in an arm64 guest.

Like python_guest.py for x86, but the interpreter and its extension modules are arm64 ones
from the aarch64 sysroot (Debian bookworm python3.11, the same minor version as the host's),
while the pure-Python stdlib is the host's compiled bytecode (arch-independent) for the
modules the loader imports (traced on the host by loader_trace.py). So the guest runs the
real path a Debian arm64 user gets: kexec_file_load -> ENOSYS -> kexec-tools `kexec -p`,
with the `_text` kallsyms fix applied in a private mount namespace by the product itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, ImageSpec, dir_entry, file_entry, symlink_entry
from tests.support.debian_kernel import debian_kernel
from tests.support.foreign_sysroot import Sysroot

from .images import init_entry, write_initramfs
from .python_guest import (
    CRASHING_MARKER,
    GUEST_PYTHON,
    STDLIB,
    Module,
    Step,
    arch_data_entry,
    init_script,
    loader_entries,
    parse_steps,
    step,
    trace_loader_modules,
)
from .qemu import VM, VMSpec

HOST_TRIPLET = "x86_64-linux-gnu"
TRIPLETS = {"aarch64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu",
            "s390x": "s390x-linux-gnu"}
APPLETS = ("sh", "mount", "cat", "echo", "grep", "cut", "poweroff", "uname", "sleep",
           "printf", "ls")


def guest_python_entries(sysroot: Sysroot, modules: dict[str, Module]) -> list[Entry]:
    """The sysroot's python3.11 and extensions, the host's stdlib bytecode."""
    view = Host(sysroot.root)
    arch = sysroot.arch
    py = f"/usr/bin/{GUEST_PYTHON.name}"
    if not view.is_file(py):
        raise AssertionError(f"{py} missing in {sysroot.root}: the sysroot recipe installs "
                             "python3.11-minimal (tests/support/foreign_sysroot.py)")
    entries = list(binary_entries([py], view, "the loader's interpreter", machine=arch))
    entries.append(symlink_entry("/usr/bin/python3", GUEST_PYTHON.name, "python3 on PATH"))
    extensions = []
    for mod in modules.values():
        path, cached = mod.file, mod.cached
        if not path.is_relative_to(STDLIB):
            continue
        if path.suffix == ".so":
            guest = str(path).replace(HOST_TRIPLET, TRIPLETS[arch])
            if not view.is_file(guest):
                raise AssertionError(f"{guest} (the {arch} build of {path.name}) is missing "
                                     f"in {sysroot.root}")
            extensions.append(guest)
        elif path.suffix == ".py":
            assert cached is not None and cached.exists(), path
            entries.append(file_entry(str(path.with_suffix(".pyc")), cached,
                                      f"stdlib module the loader imports ({path.name})",
                                      mode=0o644))
    if extensions:
        entries.extend(binary_entries(extensions, view, "stdlib extension", machine=arch))
    return entries


def build_loader_first_stage(sysroot: Sysroot, capture_image: Path, out: Path,
                             script: str, kernels: dict[str, Path] | None = None) -> Path:
    """`kernels`: image path -> host file (default /boot/vmlinuz = the sysroot's kernel)."""
    modules = trace_loader_modules(debian_kernel().vmlinuz)
    view = Host(sysroot.root)
    spec = ImageSpec()

    def add(entries: list[Entry]) -> None:
        for e in entries:
            if e.path not in spec:
                spec.add(e)

    bb = view.which("busybox")
    kexec = view.which("kexec")
    assert bb is not None and kexec is not None
    add(binary_entries([bb, kexec], view, "first-stage tools", machine=sysroot.arch))
    bindir = view.resolve(str(bb.parent))
    add([symlink_entry(f"{bindir}/{a}", "busybox", "busybox applet") for a in APPLETS])
    add(guest_python_entries(sysroot, modules))
    add(loader_entries(modules))
    add([arch_data_entry(sysroot.arch)])
    add([dir_entry(d, "mount point") for d in ("/proc", "/sys", "/dev", "/tmp", "/run")])
    for dest, src in (kernels or {"/boot/vmlinuz": sysroot.kernel}).items():
        add([file_entry(dest, src, "capture kernel", mode=0o644)])
    add([file_entry("/boot/capture.img", capture_image, "capture image", mode=0o644)])
    spec.add(init_entry(script))
    return write_initramfs(spec, out, "none")


def loader_script(arch: str) -> str:
    """status, load (the product decides: kexec_file_load or the fallback), status, crash."""
    loader = "python3 -m mkkdumprd.loader"
    return init_script([
        step("status-before", loader, "status"),
        step("load", loader, "--arch", arch, "load", "--kernel", "/boot/vmlinuz",
             "--initrd", "/boot/capture.img"),
        step("status-after", loader, "status"),
        step("status-json", loader, "status", "--json"),
    ], crash=True)


@dataclass(frozen=True)
class LoaderRun:
    console: str
    steps: dict[str, Step]


def run_loader_guest(spec: VMSpec, workdir: Path, timeout: float = 400.0) -> LoaderRun:
    """Boot a loader first stage (init_script(..., crash=True)), wait until it crashes into
    the capture kernel and the machine exits; the console and the script's steps."""
    with VM(spec, workdir / "console.log", timeout) as vm:
        vm.wait_for(CRASHING_MARKER)
        vm.wait_exit()
        console = vm.console()
    return LoaderRun(console, parse_steps(console))
