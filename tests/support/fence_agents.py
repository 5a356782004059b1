"""fence-agents' fence_kdump_send for tests: the Debian package downloaded once into the
test cache with `apt-get download` (never installed on this machine) and its sender copied
into a test sysroot at Debian's path."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.debian_kernel import CACHE

PACKAGE = "fence-agents"        # bookworm; trixie and later split it as fence-agents-kdump
SENDER = "usr/libexec/fence-agents/fence_kdump_send"


def fence_agents_deb() -> Path:
    dest = CACHE / "debs"
    dest.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock-fence-agents", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(dest.glob(f"{PACKAGE}_*.deb"))
        if not found:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=dest, check=True,
                           capture_output=True)
            found = sorted(dest.glob(f"{PACKAGE}_*.deb"))
        return found[-1]


def install_sender(root: Path) -> Path:
    """fence_kdump_send from the package at its Debian path under `root`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(fence_agents_deb()), tmp], check=True)
        dest = root / SENDER
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(tmp) / SENDER, dest)
    return dest
