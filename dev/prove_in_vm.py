#!/usr/bin/env python3
"""The README's first command: `mkkdumprd test --vm` against a real Debian kernel.

Fetches the Debian kernel the tests use once (linux-image-amd64's package, cached in
/var/cache/mkkdumprd-tests), prints the `mkkdumprd test --vm` command for it and runs it:
build a capture image for a local ext4 target, boot the kernel in QEMU, load the image with
mkkdumprd's own loader, crash the guest, read the vmcore back from the scratch disk and
check its log. Options after `--` go to `mkkdumprd test` (e.g. `-- --json`,
`-- --measure-crashkernel`). Exit status: that of `mkkdumprd test --vm`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.debian_kernel import debian_kernel  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out"),
                    help="where the console log, scratch disk and vmcore go (default ./out)")
    ap.add_argument("rest", nargs="*", help="more `mkkdumprd test` options (after --)")
    args = ap.parse_args()
    kernel = debian_kernel()
    argv = [sys.executable, "-m", "mkkdumprd", "test", "--vm", "--accel", "tcg",
            "--kernel", str(kernel.vmlinuz), "--kver", kernel.kver,
            "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
            "--add-drivers", "virtio_pci,virtio_blk,ext4",
            "--target", f"ext4:UUID={uuid.uuid4()}:/var/crash",
            "--workdir", str(args.out.resolve()), *args.rest]
    print("==> mkkdumprd " + " ".join(shlex.quote(a) for a in argv[3:]), flush=True)
    os.chdir(REPO)
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    sys.exit(main())
