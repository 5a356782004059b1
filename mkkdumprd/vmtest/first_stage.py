"""The first-kernel initramfs: load the capture kernel with mkkdumprd's own loader, crash.

Runs only inside a QEMU guest. Its /init mounts proc/sys/devtmpfs, runs
`python3 -m mkkdumprd.loader load` (kexec_file_load, the path `mkkdumprd start` uses)
with the capture kernel and the image it carries, checks /sys/kernel/kexec_crash_loaded,
prints CRASHING_MARKER and writes `c` to the guest's own /proc/sysrq-trigger. The capture
kernel then boots the image under test.

/init runs `step NAME COMMAND...` lines: each prints its output between two console
markers with the exit code, and `parse_steps` reads them back from the console log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.image.spec import Entry, ImageSpec, dir_entry, file_entry, symlink_entry
from mkkdumprd.quoting import shell_word
from mkkdumprd.vmtest import guest_python as gp
from mkkdumprd.vmtest.guest_files import busybox_entries, init_entry, write_initramfs
from mkkdumprd.vmtest.guest_tools import add_folded

STEP_BEGIN = "MKKDUMPRD-PY: begin"
STEP_END = "MKKDUMPRD-PY: end"
CRASHING_MARKER = "MKKDUMPRD-PY: crashing now"
DONE_MARKER = "MKKDUMPRD-PY: script done"
NOT_LOADED_MARKER = "MKKDUMPRD-PY: the capture kernel is not loaded"
PREPARE_FAILED_MARKER = "MKKDUMPRD-PY: the scratch stand-in could not be made"
KERNEL = "/boot/vmlinuz"
# The scratch stand-in's preparation (stack_script.prepare), run before the load.
PREPARE = "/prepare.sh"
MERGED_TOPS = ("/bin", "/sbin", "/lib", "/lib64")
IMAGE = "/boot/capture.img"

_INIT_HEAD = f"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PYTHONPATH={gp.LOADER_ROOT} PYTHONDONTWRITEBYTECODE=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t configfs configfs /sys/kernel/config 2>/dev/null
step() {{
    name=$1; shift
    echo "{STEP_BEGIN} $name"
    "$@" 2>&1
    rc=$?
    echo "{STEP_END} $name rc=$rc"
    return $rc
}}
"""

_SYSRQ_C = "echo c > /proc/sysrq-trigger"
_INIT_CRASH = f"""echo 1 > /proc/sys/kernel/sysrq
echo "{CRASHING_MARKER}"
{_SYSRQ_C}
echo "MKKDUMPRD-PY: still alive after sysrq-c"
poweroff -f
"""

_INIT_END = f"""echo "{DONE_MARKER}"
poweroff -f
"""

_CHECK_LOADED = (f'[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || '
                 f'{{ echo "{NOT_LOADED_MARKER}"; poweroff -f; }}\n')


def step(name: str, *argv: str) -> str:
    """One /init line: run `argv` (a shell command line) between markers."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"step name {name!r}")
    return f"step {name} {' '.join(argv)}\n"


def init_script(steps: Iterable[str], crash: bool, crash_on_boot_cpu: bool = False) -> str:
    """/init: the steps, then the crash (or a clean end). `crash_on_boot_cpu` pins the
    sysrq write to CPU 0: on x86 a capture kernel with nr_cpus=N > 1 keeps the boot CPU
    out (disable_cpu_apicid=) unless it runs there, so a crash elsewhere brings up one
    CPU fewer; tests and benches that count the capture kernel's CPUs need CPU 0."""
    end = _INIT_CRASH if crash else _INIT_END
    if crash and crash_on_boot_cpu:
        end = end.replace(_SYSRQ_C, f"taskset 1 sh -c '{_SYSRQ_C}'")
    return _INIT_HEAD + "".join(steps) + end


def load_command(cmdline: str | None, append: Sequence[str]) -> str:
    """The loader's load command, as `mkkdumprd start` plans it: `cmdline` is the base
    (this machine's /proc/cmdline; None: the guest's own), `append` the extra words."""
    words = [gp.LOADER, "load", "--kernel", KERNEL, "--initrd", IMAGE]
    if cmdline is not None:
        words += ["--cmdline", shell_word(cmdline)]
    for a in append:
        words += ["--append", shell_word(a)]
    return " ".join(words)


def crash_script(cmdline: str | None, append: Sequence[str], prepare: bool = False) -> str:
    """/init of `mkkdumprd test --vm`: (make the scratch stand-in,) load, check the load,
    crash. A failed preparation powers off before the load."""
    first = ([step("prepare", "sh", PREPARE).rstrip("\n")
              + f' || {{ echo "{PREPARE_FAILED_MARKER}"; poweroff -f; }}\n']
             if prepare else [])
    return init_script([*first, step("load", load_command(cmdline, append)), _CHECK_LOADED],
                       crash=True)


def build_first_stage(kernel: Path, capture_image: Path, out: Path, script: str,
                      arch: str = "x86_64",
                      settings: Sequence[tuple[str, Path]] = (),
                      extra: Sequence[Entry] = ()) -> Path:
    """Write the first-stage initramfs (uncompressed: it mostly carries an already
    compressed kernel and image, and decompressing under TCG only costs time) to `out`.
    `settings`: (guest path, host file) of this machine's capture command line settings
    (loader/cmdline_settings.py SOURCES), read by the guest's loader as `start` reads them.
    `extra`: the scratch stand-in's tools, modules and PREPARE script (guest_tools.py)."""
    modules = gp.trace_loader_modules(kernel)
    spec = ImageSpec()
    spec.extend(busybox_entries())
    if extra:
        # The stand-in's tools before python3: where both need a library, the tools' copy
        # wins (a --sysroot with a newer libc than this machine's still runs python3),
        # laid out below this machine's merged-/usr links.
        for top in MERGED_TOPS:
            if Path(top).is_symlink() and top not in spec:
                spec.add(symlink_entry(top, os.readlink(top), "this machine's layout"))
        add_folded(spec, extra)
    for e in gp.python_entries(modules) + gp.loader_entries(modules, arch):
        if e.path not in spec:
            spec.add(e)
    spec.add(dir_entry("/boot", "kernel and capture image"))
    spec.add(file_entry(KERNEL, kernel, "capture kernel", mode=0o644))
    spec.add(file_entry(IMAGE, capture_image, "capture image", mode=0o644))
    for guest_path, host_file in settings:
        parts = PurePosixPath(guest_path).parents
        for d in reversed([d for d in parts if str(d) != "/"]):
            if d not in spec:
                spec.add(dir_entry(str(d), "command line settings"))
        spec.add(file_entry(guest_path, host_file, "capture command line settings",
                            mode=0o644))
    spec.add(init_entry(script))
    return write_initramfs(spec, out, "none")


@dataclass(frozen=True)
class Step:
    name: str
    rc: int
    output: str


# Not anchored to line starts: the console may put escape sequences before the first one,
# and a command's last line may lack its newline.
_STEP = re.compile(rf"{STEP_BEGIN} (?P<name>[\w.-]+)\r?\n(?P<out>.*?)"
                   rf"{STEP_END} (?P=name) rc=(?P<rc>\d+)\r?$", re.M | re.S)
# A kernel message on the serial console between two lines of a step's output.
_KMSG = re.compile(r"^\[\s*\d+\.\d+\] .*\r?\n", re.M)


def parse_steps(console: str) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for m in _STEP.finditer(console):
        out = _KMSG.sub("", m.group("out")).replace("\r\n", "\n")
        steps[m.group("name")] = Step(m.group("name"), int(m.group("rc")), out)
    return steps
