"""--image's build request recovered from the image (vmtest/image_request.py): the image's
kdump.conf and its manifest's request record give back the request it was built from, as
far as it shapes the image (a real build on a fake sysroot; nothing boots)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mkkdumprd.assemble.builder import BuildRequest, build_image
from mkkdumprd.assemble.cache import ENV
from mkkdumprd.assemble.freshness import read_manifest
from mkkdumprd.assemble.manifest import request_record
from mkkdumprd.config.kdumpconf import load_kdump_conf
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image
from mkkdumprd.vmtest.image_request import request_of_image
from tests.support.fake_kmod import write_depmod_text, write_module
from tests.support.sysroot import make_sysroot

KVER = "6.1.0-test"
MODULES = {"kernel/drivers/block/virtio_blk.ko": [], "kernel/fs/ext4/ext4.ko": []}

pytestmark = pytest.mark.skipif(
    not (shutil.which("busybox") and shutil.which("makedumpfile")),
    reason="needs the host's busybox and makedumpfile")


def test_request_comes_back_from_the_image(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    bins = [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p]
    root = make_sysroot(tmp_path / "root", bins)
    kmoddir = (root / "usr/lib/modules" if (root / "lib").is_symlink()
               else root / "lib/modules") / KVER
    for rel in MODULES:
        write_module(kmoddir, rel, {"name": Path(rel).stem, "license": "GPL"})
    write_depmod_text(kmoddir, MODULES)
    (kmoddir / "modules.builtin").write_text("")
    conf = tmp_path / "kdump.conf"
    conf.write_text("ext4 /dev/vda\npath /var/crash\nhook_timeout 77\n"
                    "failure_action poweroff\ncore_collector makedumpfile -l -d 17\n")
    image = tmp_path / "kdump.img"
    view = Host(root)
    req = BuildRequest(config=load_kdump_conf(conf), kver=KVER, kmoddir=kmoddir, sysroot=view,
                       machine=view, arch="x86_64", hostonly=False,
                       add_drivers=("virtio_blk",), output=image, timeout=42)
    build_image(req)
    got = request_of_image(image)
    assert (got.kver, got.kmoddir, got.arch, got.hostonly, got.add_drivers, got.timeout) == \
        (KVER, kmoddir, "x86_64", False, ("virtio_blk",), 42)
    assert got.sysroot.root == root and got.machine.root == root
    # every image-shaping setting as configured
    man = read_manifest(image)
    assert man is not None
    assert request_record(got)["config"] == man["request"]["config"]
    assert got.config.hook_timeout == 77


def test_an_image_without_a_request_record_is_refused(tmp_path: Path) -> None:
    spec = ImageSpec()
    spec.add(data_entry("/etc/mkkdumprd/manifest.json", '{"manifest_version": 2}', "x"))
    image = tmp_path / "old.img"
    write_image(spec, image)
    with pytest.raises(UsageError, match="records no build request"):
        request_of_image(image)
