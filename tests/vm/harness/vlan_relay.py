"""An 802.1Q "switch port" on 127.0.0.1 for QEMU guests, and QEMU's monitor.

QEMU's user networking (slirp) drops VLAN-tagged frames (it takes only ARP, IPv4 and IPv6
ethertypes), so a guest's VLAN cannot reach it directly. VlanRelay sits between two QEMU
`-netdev socket,udp=` ends on 127.0.0.1, each UDP datagram one Ethernet frame:

    guest NIC ── udp ──> relay: keeps frames tagged with VID, strips the tag ── udp ──>
    hub 0 (slirp, restrict=on, guestfwd) ── udp ──> relay: adds the tag ── udp ──> guest NIC

Untagged frames and other VIDs from the guest are counted and dropped, so a dump that
arrives proves the guest tagged its traffic. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from pathlib import Path

TPID = b"\x81\x00"
LOCAL = "127.0.0.1"


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOCAL, 0))
    return s


def free_udp_port() -> int:
    with contextlib.closing(_udp()) as s:
        return int(s.getsockname()[1])


class VlanRelay:
    def __init__(self, vid: int) -> None:
        self.vid = vid
        self.guest_side = _udp()    # talks to the guest NIC's socket netdev
        self.hub_side = _udp()      # talks to the socket netdev on slirp's hub
        self.guest_port = free_udp_port()
        self.hub_port = free_udp_port()
        self.tagged = 0             # frames from the guest with our VID
        self.dropped = 0            # frames from the guest without it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def qemu_args(self, nic_netdev: str, guestfwd: str) -> list[str]:
        """The guest NIC's netdev `nic_netdev` (add its -device yourself), and slirp on hub 0."""
        fwd = guestfwd.replace(",", ",,")
        return [
            "-netdev", f"socket,id={nic_netdev},udp={LOCAL}:{self.guest_side.getsockname()[1]}"
                       f",localaddr={LOCAL}:{self.guest_port}",
            "-netdev", f"socket,id=relayhub,udp={LOCAL}:{self.hub_side.getsockname()[1]}"
                       f",localaddr={LOCAL}:{self.hub_port}",
            "-netdev", "hubport,id=hp0,hubid=0,netdev=relayhub",
            "-netdev", f"user,id=slirp,restrict=on,guestfwd={fwd}",
            "-netdev", "hubport,id=hp1,hubid=0,netdev=slirp",
        ]

    def _run(self) -> None:
        tag = TPID + struct.pack("!H", self.vid)
        while not self._stop.is_set():
            ready, _, _ = select.select([self.guest_side, self.hub_side], [], [], 0.2)
            for s in ready:
                frame = s.recv(65536)
                if s is self.guest_side:
                    if frame[12:14] == TPID and struct.unpack("!H", frame[14:16])[0] & 0xFFF \
                            == self.vid:
                        self.tagged += 1
                        self.hub_side.sendto(frame[:12] + frame[16:], (LOCAL, self.hub_port))
                    else:
                        self.dropped += 1
                else:
                    self.guest_side.sendto(frame[:12] + tag + frame[12:],
                                           (LOCAL, self.guest_port))

    def __enter__(self) -> VlanRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.guest_side.close()
        self.hub_side.close()


def monitor_command(sock: Path, command: str, timeout: float = 60.0) -> str:
    """Send one HMP command to QEMU's `-monitor unix:SOCK,server=on,wait=off` once it is
    up (QEMU is starting in parallel); QEMU's answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(sock))
                s.settimeout(5)
                s.recv(4096)                        # banner and prompt
                s.sendall(command.encode() + b"\n")
                time.sleep(0.5)
                return s.recv(4096).decode(errors="replace")
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
