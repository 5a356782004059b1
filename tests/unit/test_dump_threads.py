"""makedumpfile's threads and the image's compression level (issue 24).

glibc's libgcc_s goes in with makedumpfile because `--num-threads` needs it (without it
the dump aborts at its end, as bench/dump.py showed). `--compress FORMAT[:LEVEL]` chooses
the level."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.assemble.builder import BuildRequest, build_image
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
