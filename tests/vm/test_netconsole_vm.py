"""netconsole in the capture kernel: its console reaches a UDP listener on this machine.

The guest's second NIC is QEMU's `-netdev dgram` between two loopback ports: QEMU sends each
Ethernet frame the guest transmits as one UDP datagram to the test's socket on 127.0.0.1,
which decodes Ethernet, IPv4 and UDP itself. Nothing leaves this machine (no user
networking at all in this test). The image has a local target that never appears, so the
dump fails after kdump.timeout and failure_action powers the guest off; the log host sees
the capture kernel's messages, the script's lines and the outcome record.
"""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.vm.conftest import BuildImage
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.first_stage import CAPTURE_APPEND, LOADED_MARKER
from tests.vm.servers import free_port

GUEST_IP = "10.0.2.15"
LOG_HOST = "10.0.2.2"
LOG_PORT = 6666


def _udp_payload(frame: bytes) -> tuple[str, int, bytes] | None:
    """(source IP, destination port, payload) of an Ethernet/IPv4/UDP frame, else None."""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != 17 or len(ip) < ihl + 8:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    src = socket.inet_ntoa(ip[12:16])
    _, dport, length = struct.unpack("!HHH", ip[ihl:ihl + 6])
    return src, dport, ip[ihl + 8:min(total, ihl + length)]


class Listener:
    """Collects the datagrams QEMU sends to 127.0.0.1:port until stopped."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.frames.append(data)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.vm
def test_capture_console_reaches_the_log_host(kernel: Kernel, tmp_path: Path,
                                              build_capture: BuildImage) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text("ext4 UUID=0badc0de-0000-4000-8000-000000000000\n"
                    "failure_action poweroff\n"
                    f"netconsole {LOG_HOST}:{LOG_PORT}\n")
    image = build_capture(["-c", str(conf), "--ip",
                           f"{GUEST_IP}::{LOG_HOST}:255.255.255.0::eth0:none"],
                          tmp_path / "capture.img", drivers=["virtio_net", "ext4"])
    with Listener() as listener:
        netdev = ("dgram,id=n1,local.type=inet,local.host=127.0.0.1,"
                  f"local.port={free_port()},remote.type=inet,remote.host=127.0.0.1,"
                  f"remote.port={listener.port}")
        run = crash_cycle(kernel, image, [], tmp_path,
                          capture_append=f"{CAPTURE_APPEND} kdump.timeout=5",
                          extra_args=["-netdev", netdev,
                                      "-device", "virtio-net-pci,netdev=n1"])
    console = run.console.split(LOADED_MARKER, 1)[-1]
    udp = [p for p in map(_udp_payload, listener.frames) if p is not None]
    assert udp, f"no IPv4/UDP frame arrived ({len(listener.frames)} frames); console:\n" \
                f"{console[-4000:]}"
    assert {(src, port) for src, port, _ in udp} == {(GUEST_IP, LOG_PORT)}
    text = b"".join(payload for _, _, payload in udp).decode("utf-8", "replace")
    # the kernel's own messages, the script's lines and the outcome record
    assert "kdump: dump failed: dump target UUID=0badc0de" in text, text[-4000:]
    assert "kdump-outcome: result=failed" in text, text[-4000:]
    assert "kdump: failure action: powering off" in text, text[-4000:]
    assert "reboot: Power down" in text or "reboot: Power down" in console
