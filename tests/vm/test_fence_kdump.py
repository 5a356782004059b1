"""fence_kdump and `dracut_args --mount` in one crash: the capture image tells a fence_kdump
peer on 127.0.0.1 that it is dumping, and dumps to the ext4 disk the RHEL 7 style --mount
line names.

The guest's NIC is a QEMU `-netdev socket,udp=` link whose other end is the test's UDP
socket on 127.0.0.1 (tests/vm/harness/fence_peer.py): it answers ARP for the peer's address
and decodes the frames; nothing leaves this machine. The sender is fence-agents'
fence_kdump_send from the Debian package (downloaded into the test cache, copied into a
test sysroot beside this machine's busybox and makedumpfile).
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.support.fence_agents import install_sender
from tests.support.sysroot import make_sysroot
from tests.vm.conftest import BuildImage
from tests.vm.harness import disks, vmcore
from tests.vm.harness.crash import crash_cycle
from tests.vm.harness.fence_peer import MAGIC, FencePeer
from tests.vm.harness.first_stage import LOADED_MARKER


@pytest.mark.vm
def test_fence_kdump_peer_told_while_dumping_to_a_dracut_mount(
        kernel: Kernel, tmp_path: Path, build_capture: BuildImage) -> None:
    sysroot = make_sysroot(tmp_path / "sysroot", ["/usr/bin/busybox", "/usr/bin/makedumpfile",
                                                  "/usr/sbin/vmcore-dmesg"])
    install_sender(sysroot)
    fs_uuid = str(uuid.uuid4())
    conf = tmp_path / "kdump.conf"
    conf.write_text(f'dracut_args --mount "UUID={fs_uuid} /var/crash ext4 defaults"\n'
                    "path /var/crash\n"
                    "core_collector makedumpfile -l --message-level 7 -d 31\n"
                    "fence_kdump_nodes 10.0.2.100\n"
                    "fence_kdump_args -p 7410 -i 1\n"
                    "final_action poweroff\n")
    image = build_capture(["-c", str(conf), "--sysroot", str(sysroot),
                           "--ip", "10.0.2.15::10.0.2.2:255.255.255.0::eth0:none"],
                          tmp_path / "capture.img", drivers=["ext4", "virtio_net"])
    disk = disks.make_ext4(tmp_path / "disk.img", fs_uuid,
                           content=disks.tree(tmp_path / "fs", "var/crash"))
    peer = FencePeer()
    with peer.running():
        run = crash_cycle(kernel, image, [disk], tmp_path, extra_args=peer.qemu_args())
    console = run.console.split(LOADED_MARKER, 1)[-1]
    assert "fence_kdump: telling 10.0.2.100 (fence_kdump_send -p 7410 -i 1 10.0.2.100)" \
        in console, console[-4000:]
    # the peer heard this node: from its capture address, fence_kdump's 8-byte message
    assert peer.messages, f"no fence_kdump message; ARP replies {peer.arp_replies}\n" \
        f"{console[-4000:]}"
    # -i 1: repeated while the dump runs (the first at the start, not once at the end)
    assert len(peer.messages) >= 2, len(peer.messages)
    for m in peer.messages:
        assert (m.src, m.dst, m.dport) == ("10.0.2.15", "10.0.2.100", 7410)
        assert m.fence_kdump == (MAGIC, 1), m.payload.hex()
        assert m.payload == struct.pack("<II", 0x1B302A40, 1)
    # and the dump still completed, on the disk the --mount line names
    dumps = disks.ext4_find_dumps(disk)
    assert len(dumps) == 1, f"dump dirs {dumps}; console:\n{console[-4000:]}"
    files = {e.name: e for e in disks.ext4_ls(disk, f"/var/crash/{dumps[0]}")}
    assert {"vmcore", "vmcore-dmesg.txt"} <= set(files), f"{sorted(files)}\n{console[-4000:]}"
    vmc = disks.ext4_dump(disk, f"/var/crash/{dumps[0]}/vmcore", tmp_path / "vmcore")
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(vmc), "vmcore")
    print(f"fence_kdump messages: {len(peer.messages)}, ARP replies: {peer.arp_replies}, "
          f"{run.seconds:.0f} s")
