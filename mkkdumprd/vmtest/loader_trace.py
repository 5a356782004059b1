"""Run by the guest's interpreter ON THE HOST to list what `python3 -m mkkdumprd.loader` imports.

Usage: /usr/bin/python3 -I loader_trace.py PKGROOT KERNEL SCRATCH
  (PKGROOT: the folder holding the mkkdumprd package, a checkout or site-packages)
  -> JSON {module: {"file": ..., "cached": ...}} on stdout.

It drives every path of the loader's entry point (status, load --dry-run, load, unload, the
no-reservation error) against a fake root in SCRATCH with a fake syscall, so no kexec
system call is ever made; MKKDUMPRD_FORBID_KEXEC is set as well, so that even a mistake
here makes `real_syscall` refuse instead of loading anything on this machine.
Imports made while Python starts up (encodings, site, ...) and by `-m` (runpy) are in
sys.modules too, so the list is the whole set a bare interpreter needs.
"""

import contextlib
import importlib.util
import io
import json
import os
import runpy  # noqa: F401  (what `python3 -m` imports)
import sys
from pathlib import Path


def _fake_root(scratch: Path, kernel: Path, reserved: int) -> Path:
    root = scratch / f"root-{reserved}"
    for rel, text in {
        "sys/kernel/kexec_crash_size": f"{reserved}\n",
        "sys/kernel/kexec_crash_loaded": "0\n",
        "proc/cmdline": "console=ttyS0 crashkernel=256M panic=-1\n",
        "proc/sys/kernel/osrelease": "6.1.0-trace-amd64\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "boot").mkdir(exist_ok=True)
    (root / "boot/capture.img").write_bytes(b"\0" * 4096)
    # A copy, not a symlink: the view resolves absolute links inside the fake root.
    (root / "boot/vmlinuz").write_bytes(kernel.read_bytes())
    return root


def main() -> int:
    repo, kernel, scratch = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    os.environ["MKKDUMPRD_FORBID_KEXEC"] = "1"
    sys.path.insert(0, str(repo))
    from mkkdumprd.loader import live
    from mkkdumprd.loader.__main__ import main as loader_main

    calls: list[int] = []

    def fake_syscall(nr: int, kfd: int, ifd: int, n: int, cmd: bytes | None, fl: int) -> None:
        calls.append(fl)

    def fake_runner(host: object, argv: object, kallsyms: object) -> tuple[int, str]:
        raise AssertionError("kexec-tools reached")

    ok = _fake_root(scratch, kernel, 256 << 20)
    none = _fake_root(scratch, kernel, 0)
    runs = [
        (none, ["load", "--kernel", "/boot/vmlinuz", "--initrd", "/boot/capture.img"], 1),
        (ok, ["status"], 3),
        (ok, ["load", "--dry-run", "--kernel", "/boot/vmlinuz", "--initrd",
              "/boot/capture.img"], 0),
        (ok, ["load", "--kernel", "/boot/vmlinuz", "--initrd", "/boot/capture.img"], 0),
        (ok, ["status", "--json"], 3),
        (ok, ["unload"], 0),
    ]
    for root, argv, want in runs:
        # The fake tree is the running system and the fake syscall its kernel (live.py's
        # door): paths are the view's, not this host's.
        live.RUNNING = live.Kernel(root, fake_syscall, fake_runner)
        os.chdir(root)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = loader_main(["--root", str(root), *argv])
        if rc != want:
            print(f"loader_trace: {argv} exited {rc}, expected {want}:\n{out.getvalue()}",
                  file=sys.stderr)
            return 1
    if len(calls) != 2:
        print(f"loader_trace: expected a load and an unload, saw {calls}", file=sys.stderr)
        return 1
    # Where this interpreter keeps each module's bytecode (Debian compiles the stdlib at
    # install time), so the caller needs no knowledge of the version's pyc tag. Frozen
    # modules (os, codecs, ...) have no __cached__ but are still shipped: os.py(c) is the
    # landmark by which the interpreter finds its stdlib.
    found: dict[str, dict[str, str | None]] = {}
    for name, m in sorted(sys.modules.items()):
        file = getattr(m, "__file__", None)
        if not file:
            continue
        cached = getattr(m, "__cached__", None)
        if cached is None and file.endswith(".py"):
            cached = importlib.util.cache_from_source(file)
        found[name] = {"file": file, "cached": cached}
    json.dump(found, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
