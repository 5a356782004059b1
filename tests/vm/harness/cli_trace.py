"""Run by the guest's interpreter ON THE HOST to list what `python3 -m mkkdumprd` imports for
the crash-record commands (pstore, report, status, pstore setup) the pstore VM tests run in
the guest.

Usage: /usr/bin/python3 cli_trace.py REPO SITE SCRATCH
  -> JSON {module: {"file": ..., "cached": ...}} on stdout.

SITE is the directory holding click (the venv's site-packages). The commands run against a
fake root in SCRATCH; nothing on this machine is read for them but that tree.
"""

import contextlib
import importlib.util
import io
import json
import os
import runpy  # noqa: F401  (what `python3 -m` imports)
import sys
from pathlib import Path


def main() -> int:
    repo, site, scratch = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    os.environ["MKKDUMPRD_FORBID_KEXEC"] = "1"
    sys.path[:0] = [str(repo), str(site)]
    root = scratch / "root"
    rec = root / "sys/fs/pstore/dmesg-ramoops-0"
    rec.parent.mkdir(parents=True)
    rec.write_text("<0>[ 1.0] Kernel panic - not syncing: trace\n")
    for rel, text in {"proc/cmdline": "console=ttyS0\n", "sys/kernel/kexec_crash_loaded": "0\n",
                      "sys/kernel/kexec_crash_size": "0\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "var/crash").mkdir(parents=True)
    # mkkdumprd/__main__.py asks the up-to-date stamp first, as the guest's command will.
    from mkkdumprd.cli import main as cli_main
    from mkkdumprd.uptodate import stamp
    for argv in (["pstore", "--dry-run"], ["pstore"], ["report"], ["report", "--json"],
                 ["status"], ["status", "--json"], ["pstore", "setup", "--json"]):
        if stamp.current_output([*argv, "--root", str(root)]) is not None:
            print(f"cli_trace: {argv} answered by an up-to-date stamp", file=sys.stderr)
            return 1
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                cli_main([*argv, "--root", str(root)], prog_name="mkkdumprd")
            except SystemExit as exc:
                if exc.code not in (0, 3, None):
                    print(f"cli_trace: {argv} exited {exc.code}:\n{out.getvalue()}",
                          file=sys.stderr)
                    return 1
    found = {}
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
