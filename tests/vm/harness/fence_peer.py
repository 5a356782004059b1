"""A fence_kdump peer on 127.0.0.1 for a guest NIC on a QEMU `-netdev socket,udp=` link.

QEMU sends each Ethernet frame the guest transmits as one UDP datagram to our socket and
delivers the datagrams we send back to its `localaddr` as frames to the guest: a private
two-port wire on the loopback interface, nothing routed anywhere. The peer answers ARP for
its address (so the guest's IPv4 stack sends to it) and decodes every IPv4/UDP frame to its
port as a fence_kdump message (ClusterLabs/fence-agents agents/kdump/message.h: u32 magic
0x1B302A40, u32 version 1, the sender's byte order; x86 is little-endian).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = 0x1B302A40
PEER_MAC = bytes.fromhex("525400fe0001")


@dataclass(frozen=True)
class Message:
    src: str
    dst: str
    dport: int
    payload: bytes
    at: float

    @property
    def fence_kdump(self) -> tuple[int, int] | None:
        """(magic, version) read little-endian, or None for a payload of another size."""
        return struct.unpack("<II", self.payload) if len(self.payload) == 8 else None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FencePeer:
    ip: str = "10.0.2.100"
    port: int = 7410
    messages: list[Message] = field(default_factory=list)
    arp_replies: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.our_port = int(self.sock.getsockname()[1])
        self.qemu_port = _free_udp_port()        # QEMU's localaddr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def qemu_args(self, mac: str = "52:54:00:12:34:56") -> list[str]:
        return ["-netdev", f"socket,id=f0,udp=127.0.0.1:{self.our_port},"
                           f"localaddr=127.0.0.1:{self.qemu_port}",
                "-device", f"virtio-net-pci,netdev=f0,mac={mac}"]

    @contextlib.contextmanager
    def running(self) -> Iterator[FencePeer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)
            self.sock.close()

    def _serve(self) -> None:
        me = ipaddress.IPv4Address(self.ip).packed
        while not self._stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr != ("127.0.0.1", self.qemu_port) or len(frame) < 42:
                continue
            ethertype = struct.unpack("!H", frame[12:14])[0]
            if ethertype == 0x0806:
                self._arp(frame, me)
            elif ethertype == 0x0800:
                self._ipv4(frame)

    def _arp(self, frame: bytes, me: bytes) -> None:
        arp = frame[14:42]
        op = struct.unpack("!H", arp[6:8])[0]
        sha, spa, tpa = arp[8:14], arp[14:18], arp[24:28]
        if op != 1 or tpa != me:
            return
        reply = (sha + PEER_MAC + struct.pack("!H", 0x0806)
                 + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + PEER_MAC + me + sha + spa)
        self.sock.sendto(reply, ("127.0.0.1", self.qemu_port))
        self.arp_replies += 1

    def _ipv4(self, frame: bytes) -> None:
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or len(ip) < ihl + 8:
            return
        src = str(ipaddress.IPv4Address(ip[12:16]))
        dst = str(ipaddress.IPv4Address(ip[16:20]))
        _sport, dport, length = struct.unpack("!HHH", ip[ihl:ihl + 6])
        if dport != self.port:
            return
        payload = ip[ihl + 8:ihl + length]
        self.messages.append(Message(src, dst, dport, bytes(payload), time.monotonic()))
