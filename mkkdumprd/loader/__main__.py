"""`python3 -m mkkdumprd.loader load|unload|status`: the loader without click.

For hosts and guests that have a bare python3 (standard library only); the options mirror
`mkkdumprd load|unload|status`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mkkdumprd.arch import host_arch, load_arch
from mkkdumprd.errors import MkkdumprdError, error_line
from mkkdumprd.host import Host
from mkkdumprd.loader import live
from mkkdumprd.loader import load as loader
from mkkdumprd.loader import status as loader_status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mkkdumprd.loader")
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--arch", default=None)
    sub = p.add_subparsers(dest="cmd", required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--kernel", "-k")
    ld.add_argument("--initrd", "-i")
    ld.add_argument("--no-initrd", action="store_true")
    ld.add_argument("--kver")
    ld.add_argument("--cmdline")
    ld.add_argument("--append", "-a", action="append", default=[])
    ld.add_argument("--dry-run", "-n", action="store_true")
    sub.add_parser("unload")
    st = sub.add_parser("status")
    st.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    host = Host(args.root)
    try:
        if args.cmd == "status":
            s = loader_status.read_status(host)
            print(json.dumps(loader_status.status_json(s), indent=2) if args.json
                  else loader_status.format_status(s))
            return s.exit_code
        arch = load_arch(args.arch or host_arch())
        if args.cmd == "unload":
            kernel = live.kernel_for(args.root)
            if kernel is None:
                print(f"would unload the crash kernel; {live.why_not(args.root)}: "
                      "nothing called")
                return 0
            loader.unload(host, arch, kernel)
            print("crash kernel unloaded")
            return 0
        plan = loader.plan_load(host, arch, kver=args.kver, kernel=args.kernel,
                                initrd=args.initrd, no_initrd=args.no_initrd,
                                cmdline=args.cmdline, append=args.append)
        kernel = live.kernel_for(args.root, dry_run=args.dry_run)
        if kernel is None:
            print(plan.describe(host))
            print(f"{live.why_not(args.root, dry_run=args.dry_run)}: kexec_file_load not called")
            return 0
        rec = loader.execute_load(plan, host, kernel)
        if rec.get("note"):
            print(f"mkkdumprd: {rec['note']}")
        print(f"loaded {rec['kernel']} ({rec['kernel_how']}) with {rec['initrd']}")
        return 0
    except MkkdumprdError as exc:
        print(error_line(exc), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
