"""What the dump benches' guests share: kernel memory filled before the crash
(bench/dump.py), and the capture image they dump with (also bench/crashkernel_min.py);
not a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.debian_kernel import Kernel

REPO = Path(__file__).resolve().parents[2]

# Runs in the first stage: fill pipes, report, then sleep holding them until the crash.
FILL_PY = r'''
import os, sys
mib = int(sys.argv[1])
try:
    import fcntl
    size = 1 << 20
except ImportError:
    fcntl = None
    size = 1 << 16
src = b"".join(open(os.path.join(d, f), "rb").read()
               for d, _, fs in os.walk("/opt/mkkdumprd") for f in fs if f.endswith(".py"))
buf = (src * (size // len(src) + 1))[:size]
keep = []
for i in range((mib << 20) // size):
    r, w = os.pipe()
    if fcntl:
        fcntl.fcntl(w, 1031, size)      # F_SETPIPE_SZ
    os.write(w, buf)
    os.close(w)
    keep.append(r)
print("MKKDUMPRD-BENCH: filled", len(keep) * size >> 20, "MiB in", len(keep), "pipes",
      flush=True)
open("/tmp/filled", "w").close()
idle_r, idle_w = os.pipe()
os.read(idle_r, 1)      # blocks for good: the pipes stay full until the crash
'''


def fill_steps(mib: int) -> list[str]:
    """/init steps: fill `mib` MiB of kernel memory and wait until it is filled."""
    return ["cat > /tmp/fill.py <<'EOF'\n" + FILL_PY + "EOF\n",
            "ulimit -n 65536\n",
            f"python3 /tmp/fill.py {mib} &\n",
            "while [ ! -e /tmp/filled ]; do sleep 1; done\n"]


def build_capture(kernel: Kernel, conf: Path | None, fs_uuid: str, out: Path) -> Path:
    """The capture image for an ext4 disk with `fs_uuid`, built as users build it (with
    mkkdumprd's default configuration when `conf` is None)."""
    argv = [sys.executable, "-m", "mkkdumprd", "build",
            *(("-c", str(conf)) if conf else ()), "--kver", kernel.kver,
            "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
            "--add-drivers", "virtio_pci,virtio_blk,ext4",
            "--target", f"local:UUID={fs_uuid}:/var/crash", "--force", "-o", str(out)]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"mkkdumprd build failed (rc {r.returncode}):\n{r.stdout}{r.stderr}")
    return out
