"""Rebuild detection by content: each kind of input changed gives a rebuild with its reason,
nothing changed gives "up to date", stat decides what is hashed, broken caches behave; the
rebuild policy (force flags, what may be overwritten) on the same builds.

Real builds into a tmp dir: a sysroot with copies of the host's busybox and makedumpfile
and their libraries (so they can be changed), a small module tree of fake `.ko` files with
depmod's text files, and private copies of modules.d and templates.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.assemble import digests as digests_mod
from mkkdumprd.assemble import freshness
from mkkdumprd.assemble.builder import BuildRequest, build_image
from mkkdumprd.assemble.cache import ENV
from mkkdumprd.assemble.freshness import check_fresh, read_manifest
from mkkdumprd.assemble.rebuild_policy import Did, Ensured, Overwrite, ensure_image
from mkkdumprd.cli import main
from mkkdumprd.config.kdumpconf import load_kdump_conf
from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.image import integrity
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image
from mkkdumprd.resources import data_dir
from tests.support.fake_kmod import write_depmod_text, write_module
from tests.support.sysroot import make_sysroot

KVER = "9.9.9-fresh"
MODULES = {
    "kernel/fs/ext4/ext4.ko": ["kernel/fs/jbd2/jbd2.ko"],
    "kernel/fs/jbd2/jbd2.ko": [],
    "kernel/drivers/block/virtio_blk.ko": [],
}

pytestmark = pytest.mark.skipif(
    not (shutil.which("busybox") and shutil.which("makedumpfile")),
    reason="needs the host's busybox and makedumpfile")


class Setup:
    def __init__(self, tmp: Path) -> None:
        bins = [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p]
        self.root = make_sysroot(tmp / "root", bins)
        self.kmoddir = self.root / "lib/modules" / KVER if not (self.root / "lib").is_symlink() \
            else self.root / "usr/lib/modules" / KVER
        for rel in MODULES:
            write_module(self.kmoddir, rel, {"name": Path(rel).stem, "license": "GPL"})
        write_depmod_text(self.kmoddir, MODULES)
        (self.kmoddir / "modules.builtin").write_text("")
        self.vmlinuz = self.root / "boot" / f"vmlinuz-{KVER}"
        self.vmlinuz.parent.mkdir(parents=True)
        self.vmlinuz.write_bytes(b"MZ fake kernel")
        self.modules_d = tmp / "modules.d"
        self.templates = tmp / "templates"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(data_dir("modules.d"), self.modules_d, ignore=ignore)
        shutil.copytree(data_dir("templates"), self.templates, ignore=ignore)
        self.conf = tmp / "kdump.conf"
        self.conf.write_text("ext4 /dev/vda\npath /var/crash\n")
        self.image = tmp / "kdump.img"

    def request(self, **kw: object) -> BuildRequest:
        view = Host(self.root)
        args: dict[str, object] = dict(
            config=load_kdump_conf(self.conf), kver=KVER, kmoddir=self.kmoddir, sysroot=view,
            machine=view, arch="x86_64", hostonly=False, add_drivers=("virtio_blk",),
            output=self.image, modules_dir=self.modules_d,
            templates_dir=self.templates)
        args.update(kw)
        return BuildRequest(**args)  # type: ignore[arg-type]

    def build(self, **kw: object) -> None:
        build_image(self.request(**kw))

    def check(self, **kw: object) -> freshness.Freshness:
        return check_fresh(self.request(**kw), self.image)

    def ensure(self, overwrite: Overwrite, **kw: object) -> Ensured:
        return ensure_image(self.request(**kw), overwrite)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    s = Setup(tmp_path)
    s.build()
    return s


def _one(fresh: freshness.Freshness) -> str:
    assert not fresh.up_to_date
    assert len(fresh.reasons) == 1, fresh.reasons
    return fresh.reasons[0]


def test_nothing_changed_is_up_to_date(setup: Setup) -> None:
    assert setup.check() == freshness.Freshness(True, ())


def test_touched_but_same_content_is_up_to_date(setup: Setup) -> None:
    for p in (setup.conf, setup.kmoddir / "kernel/fs/ext4/ext4.ko", setup.vmlinuz):
        os.utime(p, ns=(1, 1))
    assert setup.check().up_to_date


def test_only_files_whose_stat_changed_are_hashed(setup: Setup,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = digests_mod.sha256_file

    def counting(path: str | os.PathLike[str]) -> str:
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(digests_mod, "sha256_file", counting)
    assert setup.check().up_to_date
    assert hashed == []
    os.utime(setup.vmlinuz, ns=(5, 5))
    assert setup.check().up_to_date
    assert hashed == [str(setup.vmlinuz)]


def test_kernel_module_changed(setup: Setup) -> None:
    write_module(setup.kmoddir, "kernel/fs/jbd2/jbd2.ko", {"name": "jbd2", "license": "MIT"})
    assert _one(setup.check()) == "kernel module jbd2 changed"


def test_config_file_changed(setup: Setup) -> None:
    setup.conf.write_text("ext4 /dev/vda\npath /var/crash\n# edited\n")
    assert _one(setup.check()) == f"config changed: {setup.conf}"


def test_config_value_changed(setup: Setup) -> None:
    setup.conf.write_text("ext4 /dev/vdb\npath /var/crash\n")
    reasons = setup.check().reasons
    assert f"config changed: {setup.conf}" in reasons
    assert "config changed: target" in reasons


def test_build_option_changed(setup: Setup) -> None:
    reason = _one(setup.check(add_drivers=("virtio_blk", "ext4")))
    assert reason == "build option add_drivers changed (virtio_blk → virtio_blk,ext4)"
    assert "build option timeout changed" in _one(setup.check(timeout=30))


def test_binary_and_library_changed(setup: Setup) -> None:
    manifest = read_manifest(setup.image)
    assert manifest is not None
    labels = manifest["input_labels"]
    binary = next(p for p, lab in labels.items() if lab.startswith("binary ")
                  and p.endswith("makedumpfile"))
    with open(binary, "ab") as f:
        f.write(b"\0")
    assert _one(setup.check()) == f"binary {binary} changed"
    libs = [p for p, lab in labels.items() if lab.startswith("library ")]
    if not libs:
        pytest.skip("static binaries: no library to change")
    with open(libs[0], "ab") as f:
        f.write(b"\0")
    assert f"library {libs[0]} changed" in setup.check().reasons


def test_kernel_image_changed(setup: Setup) -> None:
    setup.vmlinuz.write_bytes(b"MZ another kernel")
    assert _one(setup.check()) == f"kernel image {setup.vmlinuz} changed"


def test_template_and_modules_d_changed(setup: Setup) -> None:
    init = setup.templates / "init.sh.j2"
    init.write_text(init.read_text() + "\n# changed\n")
    assert _one(setup.check()) == "template init.sh.j2 changed"
    init.write_text(init.read_text().replace("\n# changed\n", ""))
    assert setup.check().up_to_date
    (setup.modules_d / "local" / "README").write_text("new file\n")
    assert _one(setup.check()) == "modules.d file local/README added"


def test_depmod_index_changed(setup: Setup) -> None:
    with open(setup.kmoddir / "modules.alias", "a") as f:
        f.write("alias virtio:d00000002v* virtio_blk\n")
    assert _one(setup.check()) == "kernel module index modules.alias changed"


def test_mkkdumprd_version_changed(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freshness, "__version__", "99.0")
    assert _one(setup.check()).startswith("mkkdumprd version changed (")


def test_rebuild_makes_it_current_again(setup: Setup) -> None:
    write_module(setup.kmoddir, "kernel/fs/ext4/ext4.ko", {"name": "ext4", "license": "MIT"})
    assert not setup.check().up_to_date
    setup.build()
    assert setup.check().up_to_date


def test_policy_force_flags_and_missing_image(setup: Setup) -> None:
    write_module(setup.kmoddir, "kernel/fs/ext4/ext4.ko", {"name": "ext4", "license": "X"})
    setup.conf.write_text("ext4 /dev/vda\npath /var/crash\nforce_no_rebuild 1\n")
    before = setup.image.read_bytes()
    kept = setup.ensure(Overwrite.IF_STALE)
    assert kept.did is Did.KEPT and kept.result is None
    assert "force_no_rebuild" in kept.reasons[0] and setup.image.read_bytes() == before
    setup.conf.write_text("ext4 /dev/vda\npath /var/crash\nforce_rebuild 1\n")
    rebuilt = setup.ensure(Overwrite.IF_STALE)
    assert rebuilt.did is Did.REBUILT and rebuilt.result is not None
    assert len(rebuilt.reasons) == 1 and "force_rebuild is set" in rebuilt.reasons[0]
    setup.image.unlink()
    created = setup.ensure(Overwrite.NEVER)
    assert (created.did, created.reasons) == (Did.CREATED, (f"{setup.image} does not exist",))
    gone = setup.image.with_suffix(".gone")
    assert _one(check_fresh(setup.request(), gone)) == f"{gone} does not exist"


def test_policy_what_may_be_overwritten(setup: Setup) -> None:
    with pytest.raises(UsageError, match="already exists; use --force to overwrite it"):
        setup.ensure(Overwrite.NEVER)
    assert setup.ensure(Overwrite.IF_STALE).did is Did.KEPT
    replaced = setup.ensure(Overwrite.ALWAYS)
    assert (replaced.did, replaced.reasons) == (Did.REPLACED, ("rebuild requested",))
    setup.image.write_text("someone else's file")
    with pytest.raises(UsageError, match="is not an mkkdumprd image; use --force"):
        setup.ensure(Overwrite.IF_STALE)
    with pytest.raises(UsageError, match="not an mkkdumprd image; say please"):
        ensure_image(setup.request(), Overwrite.IF_STALE, force_hint="say please")
    assert setup.image.read_text() == "someone else's file"
    seen: list[Ensured] = []
    done = ensure_image(setup.request(), Overwrite.ALWAYS, before_build=seen.append)
    assert done.built and seen == [replace(done, result=None)]
    assert read_manifest(setup.image) is not None


def test_foreign_and_damaged_images(setup: Setup) -> None:
    data = setup.image.read_bytes()
    setup.image.write_bytes(data[:200])
    fresh = setup.check()
    assert not fresh.up_to_date and fresh.foreign
    setup.image.write_text("not an image")
    assert setup.check().foreign


def test_a_corrupted_cache_is_ignored(setup: Setup, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    files = sorted(cache.iterdir())
    assert {f.name.split("-")[0] for f in files} >= {"digests", "kmod", "elf", "jinja"}
    for i, f in enumerate(files):
        f.write_bytes([b"", b"garbage", f.read_bytes()[:40]][i % 3])
    assert setup.check().up_to_date
    write_module(setup.kmoddir, "kernel/fs/ext4/ext4.ko", {"name": "ext4", "license": "Y"})
    assert _one(setup.check()) == "kernel module ext4 changed"
    setup.build()
    assert setup.check().up_to_date


def test_a_cache_others_can_write_is_not_used(setup: Setup, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.chmod(0o777)
    hashed: list[str] = []
    real = digests_mod.sha256_file
    monkeypatch.setattr(digests_mod, "sha256_file",
                        lambda p: hashed.append(str(p)) or real(p))
    assert setup.check().up_to_date
    assert hashed  # nothing taken from the shared directory: every input read again


def test_cli_says_up_to_date_then_why_it_rebuilds(setup: Setup) -> None:
    argv = ["build", "-c", str(setup.conf), "--sysroot", str(setup.root), "--kver", KVER,
            "--kmoddir", str(setup.kmoddir), "--no-hostonly", "--add-drivers", "virtio_blk",
            "--arch", "x86_64", "-o", str(setup.image)]
    # The CLI uses the packaged modules.d and templates: the first run rebuilds for that.
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0, r.output
    assert "rebuilding: build option modules_dir changed" in r.output
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0, r.output
    assert r.output == f"up to date: {setup.image}\n"
    write_module(setup.kmoddir, "kernel/drivers/block/virtio_blk.ko",
                 {"name": "virtio_blk", "license": "Z"})
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0, r.output
    assert "rebuilding: kernel module virtio_blk changed\n" in r.output
    assert "image:" in r.output
    r = CliRunner().invoke(main, [*argv, "--size-report"])
    assert r.exit_code == 0, r.output
    assert "unpacked size by kind" in r.output and "kernel modules" in r.output
    r = CliRunner().invoke(main, [*argv, "--force", "-q"])
    assert r.exit_code == 0 and "up to date" not in r.output


# Whole-image verification (issue 14 item 2; image/integrity.py)

@pytest.mark.parametrize("damage", ["truncate", "append-init", "no-record"])
def test_freshness_verifies_the_whole_image(setup: Setup, damage: str) -> None:
    setup.build()
    assert setup.check().up_to_date
    whole = setup.image.read_bytes()
    if damage == "truncate":
        os.truncate(setup.image, len(whole) * 6 // 10)
    elif damage == "append-init":
        spec = ImageSpec()
        spec.add(data_entry("/init", b"#!/bin/sh\nevil\n", "appended", mode=0o755))
        extra = setup.image.with_name("extra.img")
        write_image(spec, extra, compression=Compression.NONE)
        setup.image.write_bytes(whole + extra.read_bytes())
    else:
        integrity.record_path(setup.image).unlink()
    fresh = setup.check()
    assert not fresh.up_to_date
    assert any("build wrote" in r or "digest record" in r for r in fresh.reasons), fresh
    setup.ensure(Overwrite.ALWAYS)
    assert setup.check().up_to_date
