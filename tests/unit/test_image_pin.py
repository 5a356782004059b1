"""The image bytes for one fixed input, pinned by sha256.

Reshaping the builder (steps, caches, rebuild policy) must not change a single byte of
what it writes. Everything the build reads is made here, so the pin depends only on
mkkdumprd's code: a private modules.d (declared dirs, devices, symlinks, files, a binary,
kernel modules, a hook, templates), a fake module tree with depmod's files and firmware,
a hand-made static ELF, a fixed SOURCE_DATE_EPOCH. The tree lives at a fixed path because
the manifest names its inputs by absolute path; a lock keeps parallel runs apart.

Built three times (no build cache, a cold cache, a warm cache): the cache must never
change the bytes. When a change is *meant* to change the image (a new manifest field, a
new version), update PIN and say why in the commit.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import BuildRequest, build_image
from mkkdumprd.assemble.cache import ENV
from mkkdumprd.config.kdumpconf import load_kdump_conf
from mkkdumprd.host import Host
from tests.support.fake_kmod import write_depmod_text, write_module

PIN = "04d24b028fb962718a829870cd55c179efe690af252c5ab51ff7ca8ac00c3755"
BASE = Path("/tmp/mkkdumprd-image-pin")
KVER = "6.0.0-pin"
SDE = 1_700_000_000

MODULES = {
    "kernel/fs/ext4/ext4.ko": ["kernel/fs/jbd2/jbd2.ko"],
    "kernel/fs/jbd2/jbd2.ko": [],
    "kernel/lib/crc16.ko": [],
    "kernel/drivers/block/virtio_blk.ko": [],
    "kernel/drivers/net/pinnet.ko": [],
}

MODULE_TOML = """\
name = "pin"
description = "everything a module can declare"
when = "always"
dirs = ["/proc", "/sys", "/dev", "/tmp", "/etc", "/var"]
symlinks = [{ path = "/var/run", target = "../run" }, { path = "/bin", target = "usr/bin" }]
devices = [
    { path = "/dev/console", type = "char", major = 5, minor = 1, mode = 0o600 },
    { path = "/dev/vda", type = "block", major = 254, minor = 0, mode = 0o660 },
]
files = ["/etc/pin.conf", { src = "/etc/absent", dest = "/etc/x", optional = true },
         { src = "/etc/pin.conf", dest = "/etc/pin-copy.conf" }]
binaries = ["pintool", { any = ["nothere"], optional = true }]
kernel_modules = ["ext4"]
templates = [
    { src = "init.sh.j2", dest = "/init", mode = 0o755 },
    { src = "own.sh.j2", dest = "/lib/kdump/init.d/50-own.sh", mode = 0o644 },
]
"""

LOCAL_TOML = """\
name = "pinlocal"
description = "handles local targets"
when = { target = ["local"] }
depends = ["pin"]
templates = [{ src = "target.sh.j2", dest = "/lib/kdump/target.sh", mode = 0o644 }]
"""

HOOKS = '''\
from mkkdumprd.image.spec import data_entry


def entries(ctx):
    return [data_entry("/etc/pin-hook", f"kver={ctx.kver} arch={ctx.arch}\\n",
                       ctx.reason("hook file"), mode=0o644)]


def kernel_modules(ctx):
    return ["virtio_blk"]


def check(ctx):
    return ["a warning from the pin hook"]
'''

INIT = """\
#!/bin/sh
# {{ version | shq }} for {{ kver | shq }} on {{ arch | shq }}
for s in {{ init_scripts | shargs }}; do . "$s"; done
echo {{ target.device | shq }} {{ target.fstype | shq }} {{ target.path | shq }}
echo {{ collector_fs | shargs }}
echo {{ collector_stream | shargs }}
echo {{ failure_action | shq }} {{ final_action | shq }} {{ timeout | shq }}
"""

OWN = """\
# modules: {{ modules | shargs }}
# kernel modules: {{ kernel_modules | shargs }}
# binaries: {{ found_binaries | shargs }}
pre={{ kdump_pre | shq }}
"""

TARGET = ("mount -t {{ target.fstype | shq }} {{ target.device | shq }} "
          "{{ paths.mount_point | shq }}\n")


def static_elf() -> bytes:
    """A minimal x86-64 static executable: one PT_LOAD, no interpreter, no sections."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    code = b"\x31\xff\xb8\x3c\x00\x00\x00\x0f\x05"  # xor edi,edi; mov eax,60; syscall
    size = 64 + 56 + len(code)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x400000 + 120, 64, 0, 0, 64,
                                 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, size, size, 0x1000)
    return header + phdr + code


def _tree(base: Path) -> tuple[Path, Path, Path, Path]:
    if base.exists():
        shutil.rmtree(base)
    root = base / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "etc").mkdir()
    (root / "etc/pin.conf").write_text("pinned = yes\n")
    tool = root / "usr/bin/pintool"
    tool.write_bytes(static_elf())
    tool.chmod(0o755)
    kmoddir = root / "lib/modules" / KVER
    for rel in MODULES:
        info: dict[str, str | list[str]] = {"name": Path(rel).stem, "license": "GPL"}
        if rel.endswith("pinnet.ko"):
            info["firmware"] = ["pin/fw.bin", "pin/missing.bin"]
        write_module(kmoddir, rel, info)
    write_depmod_text(kmoddir, MODULES, aliases=[("virtio:d00000002v*", "virtio_blk")])
    (kmoddir / "modules.builtin").write_text("kernel/lib/crc32c.ko\n")
    fw = root / "lib/firmware/pin"
    fw.mkdir(parents=True)
    (fw / "fw.bin").write_bytes(bytes(range(256)) * 4)
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{KVER}").write_bytes(b"MZ pinned kernel")
    mods = base / "modules.d"
    (mods / "pin").mkdir(parents=True)
    (mods / "pin/module.toml").write_text(MODULE_TOML)
    (mods / "pin/hooks.py").write_text(HOOKS)
    (mods / "pin/own.sh.j2").write_text(OWN)
    (mods / "pinlocal").mkdir()
    (mods / "pinlocal/module.toml").write_text(LOCAL_TOML)
    templates = base / "templates"
    templates.mkdir()
    (templates / "init.sh.j2").write_text(INIT)
    (templates / "target.sh.j2").write_text(TARGET)
    conf = base / "kdump.conf"
    conf.write_text("ext4 UUID=0a1b2c3d-0000-4000-8000-000000000001\npath /var/crash\n"
                    "core_collector makedumpfile -l --message-level 7 -d 31\n"
                    "kdump_pre /bin/pintool\nfailure_action poweroff\n")
    return root, kmoddir, mods, conf


@pytest.fixture
def pinned_tree() -> Iterator[tuple[Path, Path, Path, Path]]:
    BASE.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{BASE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield _tree(BASE)
        finally:
            shutil.rmtree(BASE, ignore_errors=True)


def _build(root: Path, kmoddir: Path, mods: Path, conf: Path, out: Path) -> str:
    view = Host(root)
    build_image(BuildRequest(
        config=load_kdump_conf(conf), kver=KVER, kmoddir=kmoddir, sysroot=view, machine=view,
        arch="x86_64", hostonly=False,
        add_drivers=("virtio:d00000002v00001AF4", "crc32c", "pinnet"), omit_drivers=("crc16",),
        output=out, modules_dir=mods, templates_dir=BASE / "templates",
        source_date_epoch=SDE, timeout=33))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_image_bytes_are_pinned(pinned_tree: tuple[Path, Path, Path, Path],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    root, kmoddir, mods, conf = pinned_tree
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    out = BASE / "kdump.img"
    monkeypatch.setenv(ENV, "off")
    uncached = _build(root, kmoddir, mods, conf, out)
    monkeypatch.setenv(ENV, str(BASE / "cache"))
    cold = _build(root, kmoddir, mods, conf, out)
    warm = _build(root, kmoddir, mods, conf, out)
    assert os.listdir(BASE / "cache"), "the cached builds stored nothing"
    assert uncached == cold == warm
    assert uncached == PIN
