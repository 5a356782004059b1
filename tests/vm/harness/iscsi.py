"""An iSCSI target on this machine for the iSCSI VM test, and the guest that logs in to it.

`TgtTarget` runs Debian's tgtd listening on 127.0.0.1 only (an explicit portal on a free
port; tgtd's default is every address), with a private management socket (its own
--control-port number, whose socket and lock files are removed afterwards), one target
with a LUN backed by a sparse file in the test's folder and, optionally, a CHAP account.
The guest reaches it through QEMU user networking (restrict=on) and a guestfwd relay at
10.0.2.100:3260. tgtd is stopped by its PID.

`crash_over_iscsi` boots the first kernel with open-iscsi's iscsistart and e2fsprogs from
the test's tools root (tests/support/storage_tools.py, never installed here): it brings
the network up, logs in, mounts the LUN's ext4 at the dump path, loads the capture image
and crashes.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from mkkdumprd.vmtest.servers import GUEST_SERVER_IP, ServerError, _Server, free_port, require
from tests.support.debian_kernel import Kernel

from .first_stage import CAPTURE_APPEND
from .storage import crash_with_stack

TAG = "MKKDUMPRD-ISCSI"
ISCSI_PORT = 3260
GUEST_MAC = "52:54:00:12:34:56"      # QEMU's default for the first NIC
GUEST_ADDR = "10.0.2.15"
GUEST_GW = "10.0.2.2"
GUEST_MODULES = ("virtio_pci", "virtio_net", "iscsi_tcp", "sd_mod", "ext4")
TOOLS = ("/sbin/kexec", "/sbin/iscsistart")
TGT_RUN_DIR = Path("/run/tgtd")      # where tgtd puts socket.N and socket.N.lock


class TgtTarget(_Server):
    name = "tgtd"

    def __init__(self, workdir: Path, iqn: str, backing: Path,
                 chap: tuple[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.iqn = iqn
        self.backing = backing
        self.chap = chap
        # tgtd's management socket is /run/tgtd/socket.N: a number of our own, unused
        # (tgtd takes N up to 32767)
        self.control = random.randint(20000, 32000)
        while (TGT_RUN_DIR / f"socket.{self.control}").exists():
            self.control = random.randint(20000, 32000)

    def _adm(self, *args: str) -> None:
        r = subprocess.run([require("tgtadm", "tgt"), "-C", str(self.control), "--lld",
                            "iscsi", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise ServerError(f"tgtadm {' '.join(args[:4])} failed: {r.stderr.strip()}")

    def start(self) -> TgtTarget:
        self.port = free_port()
        self._spawn([require("tgtd", "tgt"), "-f", "-C", str(self.control),
                     "--iscsi", f"portal=127.0.0.1:{self.port}"])
        try:
            self._adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname",
                      self.iqn)
            self._adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
                      "--backing-store", str(self.backing))
            self._adm("--mode", "target", "--op", "bind", "--tid", "1",
                      "--initiator-address", "ALL")
            if self.chap is not None:
                user, password = self.chap
                self._adm("--mode", "account", "--op", "new", "--user", user,
                          "--password", password)
                self._adm("--mode", "account", "--op", "bind", "--tid", "1", "--user", user)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            # tgtd ignores SIGTERM while it has targets; its own shutdown, then the PID
            with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
                self._adm("--mode", "system", "--op", "delete", "--force")
            deadline = time.monotonic() + 5
            while p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait()
        for leftover in (f"socket.{self.control}", f"socket.{self.control}.lock"):
            with contextlib.suppress(FileNotFoundError):
                (TGT_RUN_DIR / leftover).unlink()

    def guestfwd(self, guest_port: int = ISCSI_PORT,
                 guest_ip: str = GUEST_SERVER_IP) -> str:
        return super().guestfwd(guest_port, guest_ip)


def first_kernel_script(iqn: str, initiator: str, fs_uuid: str, dump_path: str,
                        chap: tuple[str, str] | None) -> str:
    """The first kernel's set-up: network, login, the LUN's ext4 mounted at the dump path."""
    auth = f" -u {shlex.quote(chap[0])} -w {shlex.quote(chap[1])}" if chap else ""
    login = (f"iscsistart -i {shlex.quote(initiator)} -t {shlex.quote(iqn)} -g 1 "
             f"-a {GUEST_SERVER_IP} -p {ISCSI_PORT}")
    # With CHAP, the target must refuse a login without it (so the capture kernel's login
    # proves the secret reached iscsistart).
    refused = (f"if timeout 30 {login}; then echo '{TAG}: login without CHAP accepted'; "
               f"else echo '{TAG}: login without CHAP refused'; fi\n") if chap else ""
    return f"""
ip link set lo up
ip link set eth0 up
ip addr add {GUEST_ADDR}/24 dev eth0
ip route add default via {GUEST_GW}
mkdir -p /etc/iscsi /run/lock/iscsi
{refused}{login}{auth}
n=0
until [ "$(findfs UUID={fs_uuid} 2>/dev/null)" = /dev/sda ]; do
    n=$((n + 1)); [ $n -lt 60 ] || false; sleep 1
done
mkdir -p {dump_path}
mount -t ext4 /dev/sda {dump_path}
echo "{TAG}: first kernel sees $(cat /sys/class/iscsi_session/*/targetname)"
"""


def crash_over_iscsi(kernel: Kernel, tools: Path, capture_image: Path, setup: str,
                     guestfwd: Sequence[str], workdir: Path,
                     capture_append: str = CAPTURE_APPEND, timeout: float = 420.0) -> str:
    """Boot with user networking (restrict=on, `guestfwd`) and no disk, run `setup` (sh,
    `set -e`), load `capture_image`, crash; the console once QEMU ended."""
    return crash_with_stack(kernel, tools, capture_image, setup, (), workdir, capture_append,
                            timeout, binaries=TOOLS, modules=GUEST_MODULES, guestfwd=guestfwd)
