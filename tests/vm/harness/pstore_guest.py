"""A guest that lives through a reboot: QEMU without -no-reboot, so a panic (panic=1) or the
capture kernel's `reboot -f` is a warm reset that keeps guest RAM and with it a ramoops
region (memmap= keeps it out of the kernel's RAM). The same -kernel/-initrd boot again; /init
tells the boots apart by pstore: records there mean "second boot", which runs the project's
`python3 -m mkkdumprd pstore|report|status` (the distribution's interpreter, the traced
stdlib, the project's sources and click under /opt/mkkdumprd) and powers off.

Which modules the commands import is traced on the host by cli_trace.py (as loader_trace.py
does for the loader), with the same interpreter.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, ImageSpec, dir_entry, file_entry
from mkkdumprd.loader.cmdline import capture_cmdline, split_words
from mkkdumprd.quoting import shell_word
from mkkdumprd.records.setup import proposal
from tests.support.debian_kernel import Kernel

from .images import (
    busybox_entries,
    host_binary,
    init_entry,
    module_load_order,
    require_tool,
    write_initramfs,
)
from .python_guest import (
    GUEST_PYTHON,
    LOADER_ROOT,
    REPO,
    Module,
    arch_data_entry,
    init_script,
    python_entries,
)
from .qemu import VMSpec

TRACER = Path(__file__).with_name("cli_trace.py")
# Imported on the host through site.py's hooks; the guest has neither (as guest_python's).
HOST_ONLY = {"__main__", "sitecustomize", "_distutils_hack"}
SITE = Path(click.__file__).parents[1]
# The RAM QEMU's e820 gives the 1 GiB guest (the second boot prints its /proc/iomem and the
# test checks it): what `pstore setup` proposes for it is what the guest boots with.
GUEST_RAM = (0x100000, 0x3FFDEFFF)
GUEST_IOMEM = ("00001000-0009fbff : System RAM\n"
               f"{GUEST_RAM[0]:08x}-{GUEST_RAM[1]:08x} : System RAM\n")


def ramoops_words() -> list[str]:
    """The words `mkkdumprd pstore setup` (records/setup.py) proposes for the guest."""
    with tempfile.TemporaryDirectory(prefix="mkkdumprd-guest-iomem-") as scratch:
        (Path(scratch) / "proc").mkdir()
        (Path(scratch) / "proc/iomem").write_text(GUEST_IOMEM)
        words, notes = proposal(Host(Path(scratch)), "6.1.0", "x86_64")
    if not words:
        raise AssertionError(f"pstore setup proposes nothing for the guest: {notes}")
    return words


def capture_ramoops_words(first_kernel_append: str) -> str:
    """What the loader's capture command line keeps of the first kernel's region words."""
    kept = split_words(capture_cmdline(first_kernel_append, (), ()))
    return " ".join(w for w in kept if w.startswith(("memmap=", "ramoops.")))


FIRST_BOOT = "PSTORE-TEST: first boot"
SECOND_BOOT = "PSTORE-TEST: second boot"
DONE = "PSTORE-TEST: done"
# After the ramoops insmod: a second boot (records in pstore) runs the commands and powers
# off; a first boot goes on to crash (init_script's sysrq tail).
_BOOTS = f"""mount -t pstore pstore /sys/fs/pstore
if [ -n "$(ls /sys/fs/pstore)" ]; then
    echo "{SECOND_BOOT}"
    mkdir -p /var/crash
    step listed ls /sys/fs/pstore
    step pstore python3 -m mkkdumprd pstore --dir /var/crash
    step report python3 -m mkkdumprd report --dir /var/crash
    step report-json python3 -m mkkdumprd report --dir /var/crash --json
    step status python3 -m mkkdumprd status --json
    step setup python3 -m mkkdumprd pstore setup --json
    step iomem cat /proc/iomem
    step left ls /sys/fs/pstore
    echo "{DONE}"
    poweroff -f
fi
echo "{FIRST_BOOT}"
"""

# {append} is one shell word (shell_word): a memmap=SIZE$ADDR in double quotes would lose
# "$0..." to the shell and reach the capture kernel as memmap=SIZE/init..., a RAM limit.
LOAD = """kexec -s -p /boot/vmlinuz --initrd=/boot/capture.img --append={append}
echo "PSTORE-TEST: kexec rc=$? loaded=$(cat /sys/kernel/kexec_crash_loaded)"
"""


@functools.cache
def _trace() -> tuple[tuple[str, Module], ...]:
    with tempfile.TemporaryDirectory(prefix="mkkdumprd-cli-trace-") as scratch:
        r = subprocess.run([str(GUEST_PYTHON), "-I", str(TRACER), str(REPO), str(SITE), scratch],
                           capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "MKKDUMPRD_FORBID_KEXEC": "1"})
    if r.returncode != 0:
        raise AssertionError(f"tracing the CLI's imports failed (rc {r.returncode}):\n"
                             f"{r.stderr[-3000:]}")
    mods: dict[str, dict[str, str | None]] = json.loads(r.stdout)
    return tuple((k, Module(Path(str(v["file"])), Path(v["cached"]) if v["cached"] else None))
                 for k, v in mods.items() if k not in HOST_ONLY)


def _project_entries(modules: dict[str, Module]) -> list[Entry]:
    """The project's and click's sources the commands import, under LOADER_ROOT."""
    entries: list[Entry] = []
    # `python3 -m mkkdumprd` runs __main__.py, which the trace (calling the CLI) did not.
    for path in sorted({m.file for m in modules.values()} | {REPO / "mkkdumprd/__main__.py"}):
        if path.suffix != ".py":
            continue
        for base in (REPO, SITE):
            if path.is_relative_to(base / "mkkdumprd") or path.is_relative_to(base / "click"):
                rel = path.relative_to(base)
                entries.append(file_entry(f"{LOADER_ROOT}/{rel}", path, "imported by the CLI",
                                          mode=0o644))
    entries.append(arch_data_entry("x86_64"))
    return entries


def _ramoops(kernel: Kernel) -> tuple[list[Entry], str]:
    """ramoops and its dependencies, loaded as modprobe would at boot (the systemd unit
    `pstore setup --apply` adds): with the ramoops.* words of the kernel command line."""
    entries: list[Entry] = []
    lines: list[str] = []
    libdir = Host(Path("/")).resolve("/lib")     # as busybox_entries mirror /lib -> usr/lib
    for ko in module_load_order(kernel.kmoddir, kernel.kver, ["ramoops"]):
        dest = f"{libdir}/modules/{kernel.kver}/{ko.relative_to(kernel.kmoddir)}"
        entries.append(file_entry(dest, ko, "ramoops for the test", mode=0o644))
        params = ' "$@"' if ko.name.startswith("ramoops") else ""
        lines.append(f"insmod {dest}{params} || echo 'PSTORE-TEST: insmod {ko.name} failed'")
    args = ("set --\nfor w in $(cat /proc/cmdline); do\n"
            '    case "$w" in ramoops.*=*) set -- "$@" "${w#ramoops.}" ;; esac\ndone\n')
    return entries, args + "\n".join(lines)


def build_guest(kernel: Kernel, out: Path, capture: tuple[Path, str] | None = None) -> Path:
    """The initramfs of both boots. `capture` (image, capture kernel command line): the
    first boot loads it and crashes into it; without, it crashes with kdump not loaded."""
    modules = dict(_trace())
    spec = ImageSpec()
    spec.extend(busybox_entries())
    ko_entries, insmod = _ramoops(kernel)
    for e in [*python_entries(modules), *_project_entries(modules), *ko_entries]:
        if e.path not in spec:
            spec.add(e)
    body = [insmod + "\n", _BOOTS]
    if capture is not None:
        image, append = capture
        for e in host_binary(require_tool("kexec"), "loads the capture kernel"):
            if e.path not in spec:
                spec.add(e)
        spec.add(dir_entry("/boot", "kernel and capture image"))
        spec.add(file_entry("/boot/vmlinuz", kernel.vmlinuz, "capture kernel", mode=0o644))
        spec.add(file_entry("/boot/capture.img", image, "capture image", mode=0o644))
        body.append(LOAD.replace("{append}", shell_word(append)))
    spec.add(init_entry(init_script(body, crash=True)))
    return write_initramfs(spec, out, "none")


@dataclass(frozen=True)
class RebootingVMSpec(VMSpec):
    """A VMSpec whose guest reboots in place (no -no-reboot): RAM is kept across the reset."""

    def argv(self) -> list[str]:
        return [a for a in super().argv() if a != "-no-reboot"]
