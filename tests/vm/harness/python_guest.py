"""A first stage that loads the capture kernel with the project's own loader, in Python.

The guest gets the distribution's /usr/bin/python3 (python3.11 on bookworm, from the apt
package python3 that dev/setup installs, with its shared libraries), the standard-library
modules `python3 -m mkkdumprd.loader` imports and nothing else, the loader's own source files
under /opt/mkkdumprd (PYTHONPATH) with their arch data (mkkdumprd/data/arch/x86_64.toml),
busybox for /init, the kernel as /boot/vmlinuz and a capture image as /boot/capture.img.

Which modules the loader needs is not a hand-kept list: `loader_trace.py` runs every loader
path with the same interpreter on the host (fake root, fake syscall) and reports sys.modules.
The stdlib goes in as Debian's compiled bytecode placed where the source would be (sourceless
.pyc: no source to ship, nothing compiled under TCG); the loader goes in as its .py sources.

/init runs `step NAME COMMAND...` lines: each prints its output between two console markers
with the exit code, and `parse_steps` reads them back from the console log.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.image.spec import Entry, ImageSpec, dir_entry, file_entry, symlink_entry

from .images import busybox_entries, host_binary, init_entry, write_initramfs

# The distribution's interpreter, not this venv's: its stdlib is compiled and packaged.
GUEST_PYTHON = Path("/usr/bin/python3").resolve()
STDLIB = Path("/usr/lib") / GUEST_PYTHON.name
LOADER_ROOT = "/opt/mkkdumprd"
REPO = Path(__file__).resolve().parents[3]
TRACER = Path(__file__).with_name("loader_trace.py")
# Imported on the host through site.py's hooks (Debian's sitecustomize, setuptools' .pth);
# the guest has neither the hooks nor dist-packages.
_HOST_ONLY = {"__main__", "sitecustomize", "_distutils_hack"}

STEP_BEGIN = "MKKDUMPRD-PY: begin"
STEP_END = "MKKDUMPRD-PY: end"
CRASHING_MARKER = "MKKDUMPRD-PY: crashing now"
DONE_MARKER = "MKKDUMPRD-PY: script done"
LOADER = "python3 -m mkkdumprd.loader"

_INIT_HEAD = f"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PYTHONPATH={LOADER_ROOT} PYTHONDONTWRITEBYTECODE=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
step() {{
    name=$1; shift
    echo "{STEP_BEGIN} $name"
    "$@" 2>&1
    echo "{STEP_END} $name rc=$?"
}}
"""

_INIT_CRASH = f"""echo 1 > /proc/sys/kernel/sysrq
echo "{CRASHING_MARKER}"
echo c > /proc/sysrq-trigger
echo "MKKDUMPRD-PY: still alive after sysrq-c"
poweroff -f
"""

_INIT_END = f"""echo "{DONE_MARKER}"
poweroff -f
"""


@dataclass(frozen=True)
class Module:
    file: Path
    cached: Path | None     # the interpreter's compiled bytecode of `file`, if it has one


def trace_loader_modules(kernel: Path) -> dict[str, Module]:
    """The modules `python3 -m mkkdumprd.loader` imports, traced with GUEST_PYTHON."""
    return dict(_trace(kernel))


@functools.cache
def _trace(kernel: Path) -> tuple[tuple[str, Module], ...]:
    version = re.fullmatch(r"python3\.(\d+)", GUEST_PYTHON.name)
    if not GUEST_PYTHON.is_file() or not version or int(version.group(1)) < 11:
        raise AssertionError(f"{GUEST_PYTHON} is not a python >= 3.11; run dev/setup "
                             "(apt package python3)")
    with tempfile.TemporaryDirectory(prefix="mkkdumprd-trace-") as scratch:
        r = subprocess.run([str(GUEST_PYTHON), "-I", str(TRACER), str(REPO), str(kernel),
                            scratch], capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "MKKDUMPRD_FORBID_KEXEC": "1"})
    if r.returncode != 0:
        raise AssertionError(f"tracing the loader's imports failed (rc {r.returncode}):\n"
                             f"{r.stderr[-3000:]}")
    mods: dict[str, dict[str, str | None]] = json.loads(r.stdout)
    return tuple((k, Module(Path(str(v["file"])), Path(v["cached"]) if v["cached"] else None))
                 for k, v in mods.items() if k not in _HOST_ONLY)


def python_entries(modules: dict[str, Module]) -> list[Entry]:
    """The interpreter and the traced standard library (pyc only, at the source's path)."""
    entries = list(host_binary(GUEST_PYTHON, "the interpreter for the project's loader"))
    entries.append(symlink_entry("/usr/bin/python3", GUEST_PYTHON.name, "python3 on PATH"))
    extensions: list[str] = []
    seen: set[Path] = set()
    for mod in modules.values():
        path, cached = mod.file, mod.cached
        if not path.is_relative_to(STDLIB) or path in seen:
            continue
        seen.add(path)
        if path.suffix == ".so":
            extensions.append(str(path))
        elif path.suffix == ".py":
            if cached is None or not cached.exists():
                raise AssertionError(f"no compiled bytecode for {path} ({cached}): the "
                                     "distribution's stdlib is not byte-compiled")
            entries.append(file_entry(str(path.with_suffix(".pyc")), cached,
                                      f"stdlib module the loader imports ({path.name})",
                                      mode=0o644))
    # Extension modules with their libraries (_ctypes needs libffi, _lzma liblzma).
    if extensions:
        entries.extend(host_binary_many(extensions, "stdlib extension the loader imports"))
    # The interpreter and its extensions share libc & co.: one entry per path.
    return list({str(e.path): e for e in entries}.values())


def host_binary_many(paths: Sequence[str], reason: str) -> list[Entry]:
    out: dict[str, Entry] = {}
    for p in paths:
        for e in host_binary(p, reason):
            out.setdefault(str(e.path), e)
    return list(out.values())


def loader_entries(modules: dict[str, Module]) -> list[Entry]:
    """The project's files the loader runs from, under LOADER_ROOT, and its arch data."""
    pkg = REPO / "mkkdumprd"
    entries: list[Entry] = []
    for path in sorted({m.file for m in modules.values()}):
        if path.is_relative_to(pkg) and path.suffix == ".py":
            rel = path.relative_to(REPO)
            entries.append(file_entry(f"{LOADER_ROOT}/{rel}", path,
                                      "mkkdumprd loader source", mode=0o644))
    if not entries:
        raise AssertionError(f"the trace shows no module of {pkg}; is the tracer broken?")
    entries.append(arch_data_entry("x86_64"))
    return entries


def arch_data_entry(arch: str) -> Entry:
    """arch/<arch>.toml where the loader under LOADER_ROOT finds its package data."""
    toml = REPO / "mkkdumprd" / "data" / "arch" / f"{arch}.toml"
    return file_entry(f"{LOADER_ROOT}/{toml.relative_to(REPO)}", toml, "arch data", mode=0o644)


def step(name: str, *argv: str) -> str:
    """One /init line: run `argv` (a shell command line) between markers."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"step name {name!r}")
    return f"step {name} {' '.join(argv)}\n"


def init_script(steps: Iterable[str], crash: bool) -> str:
    return _INIT_HEAD + "".join(steps) + (_INIT_CRASH if crash else _INIT_END)


def build_python_first_stage(kernel: Path, capture_image: Path, out: Path,
                             script: str) -> Path:
    """Write the first-stage initramfs (uncompressed, like the harness's own) to `out`."""
    modules = trace_loader_modules(kernel)
    spec = ImageSpec()
    spec.extend(busybox_entries())
    for e in python_entries(modules) + loader_entries(modules):
        if e.path not in spec:
            spec.add(e)
    spec.add(dir_entry("/boot", "kernel and capture image"))
    spec.add(file_entry("/boot/vmlinuz", kernel, "capture kernel", mode=0o644))
    spec.add(file_entry("/boot/capture.img", capture_image, "capture image", mode=0o644))
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
