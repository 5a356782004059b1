"""A fake machine tree for host-only builds: /sys for a virtio disk with two partitions,
/dev nodes and by-uuid links, and a /proc/self/mountinfo with the dump target mounted."""

from __future__ import annotations

from pathlib import Path

UUID = "0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e"
ROOT_UUID = "11111111-2222-4333-8444-555555555555"


def fake_machine(root: Path, mountpoint: str = "/srv/dump") -> Path:
    def w(path: str, text: str = "") -> None:
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def ln(path: str, target: str) -> None:
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(target)

    pci = "/sys/devices/pci0000:00/0000:00:05.0"
    w(f"{pci}/modalias", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
    ln(f"{pci}/driver", "../../../bus/pci/drivers/virtio-pci")
    ln("/sys/bus/pci/drivers/virtio-pci/module", "../../../../module/virtio_pci")
    (root / "sys/module/virtio_pci").mkdir(parents=True)
    w(f"{pci}/virtio2/modalias", "virtio:d00000002v00001AF4\n")
    ln(f"{pci}/virtio2/driver", "../../../../bus/virtio/drivers/virtio_blk")
    ln("/sys/bus/virtio/drivers/virtio_blk/module", "../../../../module/virtio_blk")
    (root / "sys/module/virtio_blk").mkdir(parents=True)
    w(f"{pci}/virtio2/block/vdb/vdb1/partition", "1\n")
    ln("/sys/class/block/vdb1", "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vdb/vdb1")
    ln("/sys/class/block/vdb", "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vdb")
    w(f"{pci}/virtio2/block/vda/vda1/partition", "1\n")
    ln("/sys/class/block/vda1", "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda/vda1")
    ln(f"/dev/disk/by-uuid/{ROOT_UUID}", "../../vda1")
    w("/dev/vda1")
    w("/dev/vdb1")
    w("/dev/vdb")
    ln(f"/dev/disk/by-uuid/{UUID}", "../../vdb1")
    ln("/dev/disk/by-partuuid/abcd-01", "../../vdb1")
    w("/proc/self/mountinfo",
      "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
      f"36 22 254:17 / {mountpoint} rw,relatime shared:1 - ext4 /dev/vdb1 rw\n"
      "40 22 0:5 / /proc rw - proc proc rw\n")
    (root / mountpoint.lstrip("/") / "crash").mkdir(parents=True)
    return root
