"""makedumpfile's threads and the image's compression level (issue 24).

The capture script adds `makedumpfile --num-threads N` only to a zlib collector (-c; lzo
was slower with threads in every measurement) and only when the capture kernel has
N > 1 CPUs online (the loader's nr_cpus=, loader/capture_cpus.py), so with one CPU the
collector runs as before; then libgcc_s, which goes in with makedumpfile, is preloaded
(glibc dlopens it when a thread exits; at the end of a large dump in a small reservation
that dlopen failed and aborted the dump: bench/dump.py l2old at crashkernel=112M).
`--compress FORMAT[:LEVEL]` chooses the level."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.assemble.builder import BuildRequest, build_image
from mkkdumprd.assemble.collector_threads import collector_threads
from mkkdumprd.cli import main as cli_main
from mkkdumprd.config.kdumpconf import parse_kdump_conf
from mkkdumprd.config.model import KdumpConfig
from mkkdumprd.host import Host
from mkkdumprd.image.compression import Compression, parse_compress
from mkkdumprd.image.reader import read_file, read_members
from tests.support.debian_kernel import Kernel


def _conf(collector: str, target: str = "ext4 /dev/vda") -> KdumpConfig:
    res = parse_kdump_conf(f"{target}\npath /var/crash\ncore_collector {collector}\n")
    assert res.config is not None, res.errors
    return res.config


def test_parse_compress() -> None:
    assert parse_compress("zstd") == (Compression.ZSTD, None)
    assert parse_compress("zstd:19") == (Compression.ZSTD, 19)
    assert parse_compress("xz:0") == (Compression.XZ, 0)
    for bad, why in (("zstd:20", "1 to 19"), ("zstd:", "1 to 19"), ("lz4", "unknown"),
                     ("none:1", "no level"), ("gzip:x", "1 to 9")):
        with pytest.raises(ValueError, match=why):
            parse_compress(bad)


def test_cli_rejects_a_bad_level_as_usage() -> None:
    r = CliRunner().invoke(cli_main, ["build", "--compress", "zstd:25"])
    assert r.exit_code == 2 and "use 1 to 19" in r.output


def _build(kernel: Kernel, config: KdumpConfig, out: Path, level: int | None = None) -> Path:
    view = Host.this_machine()
    build_image(BuildRequest(config=config, kver=kernel.kver, kmoddir=kernel.kmoddir,
                             sysroot=view, machine=view, arch="x86_64", hostonly=False,
                             add_drivers=("virtio_pci", "virtio_blk", "ext4"), output=out,
                             level=level))
    return out


def test_libgcc_s_goes_in_with_makedumpfile(kernel: Kernel, tmp_path: Path) -> None:
    img = _build(kernel, _conf("makedumpfile -l --message-level 7 -d 31"), tmp_path / "i.img")
    names = {str(m.path).rsplit("/", 1)[-1] for m in read_members(img)}
    assert "libgcc_s.so.1" in names


def test_level_reaches_the_image(kernel: Kernel, tmp_path: Path) -> None:
    conf = _conf("makedumpfile -l -d 31")
    default = _build(kernel, conf, tmp_path / "3.img")
    smallest = _build(kernel, conf, tmp_path / "19.img", level=19)
    assert smallest.stat().st_size < default.stat().st_size
    assert read_file(smallest, "/init") == read_file(default, "/init")


@pytest.mark.parametrize(("collector", "threads"), [
    ("makedumpfile -l --message-level 7 -d 31", False),  # lzo: slower with threads
    ("makedumpfile -c -d 31", True),
    ("/usr/sbin/makedumpfile -c --message-level 7 -d 31", True),
    ("/usr/sbin/makedumpfile -z -d 31", False),          # not measured
    ("makedumpfile -p -d 31", False),
    ("makedumpfile -d 31", False),                    # nothing to compress in parallel
    ("makedumpfile -E -l -d 31", False),              # refused with threads
    ("makedumpfile -l -d 31 --split", False),
    ("makedumpfile -l -d 31 --num-threads 4", False),  # the user's own count
    ("makedumpfile -l -d 31 --num-threads=4", False),
    ("cp", False),
])
def test_collector_threads(collector: str, threads: bool) -> None:
    assert collector_threads(_conf(collector)) is threads


def _collector(img: Path) -> str:
    # On merged-/usr hosts /lib is a symlink in the image: the file is under /usr/lib.
    path = next(str(m.path) for m in read_members(img)
                if str(m.path).endswith("/lib/kdump/collector.sh"))
    return read_file(img, path).decode()


def _run_collect_fs(script: str, tmp: Path, cpus: int) -> str:
    """The rendered kdump_collect_fs with a fake sysfs of `cpus` online CPUs (and one
    offline) and a makedumpfile that prints LD_PRELOAD and its arguments."""
    sysfs = tmp / "sys"
    for i in range(cpus + 1):
        (sysfs / f"cpu{i}").mkdir(parents=True, exist_ok=True)
    (sysfs / f"cpu{cpus}" / "online").write_text("0\n")
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "makedumpfile"
    fake.write_text('#!/bin/sh\necho "preload=${LD_PRELOAD:-} args: $*" >&2\n'
                    ': > "$(eval echo \\${$#})"\n')
    fake.chmod(0o755)
    body = script.replace("/sys/devices/system/cpu/", f"{sysfs}/")
    out = tmp / "dump"
    out.mkdir(exist_ok=True)
    prog = (f"kinfo() {{ :; }}\nkdump_flush() {{ :; }}\nKDUMP_INIT_LOG=/dev/null\n"
            f"{body}\nkdump_collect_fs {out} {out}\n")
    r = subprocess.run(["sh", "-c", prog], capture_output=True, text=True, cwd=tmp,
                       env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
                            "KDUMP_VMCORE": "/proc/vmcore"})
    return next(ln for ln in r.stderr.splitlines() if "args:" in ln)


def test_image_threads_follow_the_capture_kernels_cpus(kernel: Kernel, tmp_path: Path) -> None:
    img = _build(kernel, _conf("makedumpfile -c --message-level 7 -d 31"), tmp_path / "i.img")
    script = _collector(img)
    one = _run_collect_fs(script, tmp_path / "one", 1)
    assert one == "preload= args: -c --message-level 7 -d 31 /proc/vmcore " \
        f"{tmp_path}/one/dump/vmcore-incomplete"
    two = _run_collect_fs(script, tmp_path / "two", 2)
    assert two.startswith("preload=libgcc_s.so.1 args: -c --message-level 7 -d 31 "
                          "--num-threads 2 /proc/vmcore ")
    # A collector that is not given threads renders without the CPU count at all: -E
    # (refused with threads) and the default lzo (slower with them).
    for name, collector in (("e", "makedumpfile -E -d 31"),
                            ("l", "makedumpfile -l --message-level 7 -d 31")):
        plain = _build(kernel, _conf(collector), tmp_path / f"{name}.img")
        assert "kdump_threads" not in _collector(plain)
        assert "--num-threads" not in _run_collect_fs(_collector(plain), tmp_path / name, 2)
