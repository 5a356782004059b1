"""Issue 14 item 11: inputs that used to end in a traceback end in one line (and exit 1/2).

Covered elsewhere: a non-UTF-8 hooks.conf and a directory of that name
(test_integration_quoting.py::test_odd_hooks_conf_is_one_line_or_preserved).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd import json_input
from mkkdumprd.assemble.freshness import read_manifest
from mkkdumprd.cli import main
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image
from tests.support import unprivileged
from tests.support.debian_kernel import Kernel

MANIFEST = "/etc/mkkdumprd/manifest.json"
CONF = "ext4 UUID=12345678-1234-1234-1234-123456789abc\n"


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mkkdumprd: error: "), err
    return lines[0]


def _build_args(kernel: Kernel, kmoddir: Path, conf: Path) -> list[str]:
    return ["build", "--kver", kernel.kver, "--kmoddir", str(kmoddir), "--no-hostonly",
            "--add-drivers", "ext4", "-c", str(conf)]


def test_apply_into_an_unwritable_directory(kexec_guard: list[str]) -> None:
    unprivileged.require()
    with unprivileged.world_dir() as root:
        (root / "etc/default/grub.d").mkdir(parents=True)
        (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX="quiet"\n')
        r = unprivileged.run_cli(["crashkernel", "apply", "--root", str(root),
                                  "--value", "256M"], cwd=root)
        assert r.returncode == 1, r.stderr
        line = _one_line(r.stderr)
        assert "cannot write /etc/default/grub.d/" in line and "needs root" in line
        assert list((root / "etc/default/grub.d").iterdir()) == []


def test_unprivileged_build_without_output(kernel: Kernel) -> None:
    unprivileged.require()
    with unprivileged.world_dir() as d:
        conf = d / "b.conf"
        conf.write_text(CONF)
        r = unprivileged.run_cli(_build_args(kernel, kernel.kmoddir, conf), cwd=d)
        assert r.returncode == 1, r.stderr
        line = _one_line(r.stderr)
        assert "/var/lib/mkkdumprd" in line or "/boot" in line, line
        r = unprivileged.run_cli(["rebuild", "--kver", kernel.kver], cwd=d)
        assert r.returncode == 1, r.stderr
        assert "need root" in _one_line(r.stderr)


def test_module_symlink_loop(kernel: Kernel, tmp_path: Path) -> None:
    # A farm of symlinks to the real tree, with ext4.ko and an extra .ko looping on itself.
    km = tmp_path / "km"
    for dirpath, _, files in os.walk(kernel.kmoddir):
        rel = Path(dirpath).relative_to(kernel.kmoddir)
        (km / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            (km / rel / f).symlink_to(Path(dirpath) / f)
    (km / "kernel/loop.ko").symlink_to("loop.ko")
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    out = tmp_path / "out.img"
    r = CliRunner().invoke(main, [*_build_args(kernel, km, conf), "-o", str(out)])
    assert r.exit_code == 0, r.output                     # the stray loop is no module
    ext4 = next(km.rglob("ext4.ko*"))
    ext4.unlink()
    ext4.symlink_to(ext4.name)
    for index in km.glob("modules.*"):                    # the scan path, without depmod's
        index.unlink()
    r = CliRunner().invoke(main, [*_build_args(kernel, km, conf), "-o", str(out), "--force"])
    assert r.exit_code in (1, 2) and isinstance(r.exception, SystemExit), r.exception
    assert "ext4" in _one_line(r.stderr)


def _deep_manifest_image(path: Path, depth: int) -> Path:
    spec = ImageSpec()
    spec.add(data_entry("/init", "#!/bin/sh\n", "init", mode=0o755))
    spec.add(data_entry(MANIFEST, "[" * depth + "]" * depth, "hostile manifest"))
    write_image(spec, path)
    return path


def test_deeply_nested_manifest(kernel: Kernel, tmp_path: Path) -> None:
    img = _deep_manifest_image(tmp_path / "deep.img", 200_000)
    r = CliRunner().invoke(main, ["ls", "--why", str(img)])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    assert "nested deeper than" in _one_line(r.stderr)
    assert read_manifest(img) is None                      # freshness: no usable manifest
    conf = tmp_path / "b.conf"
    conf.write_text(CONF)
    args = [*_build_args(kernel, kernel.kmoddir, conf), "-o", str(img)]
    r = CliRunner().invoke(main, args)                     # not ours: kept, one sentence
    assert r.exit_code == 2 and "is not an mkkdumprd image" in _one_line(r.stderr)
    r = CliRunner().invoke(main, [*args, "--force"])
    assert r.exit_code == 0, r.output
    assert read_manifest(img) is not None


def test_bounded_json_loader() -> None:
    assert json_input.loads('{"a": [[["]]]]"]]], "b": "{{{{"}') == {"a": [[["]]]]"]]], "b": "{{{{"}
    assert json_input.loads(json.dumps([[[[1]]]]), max_depth=4) == [[[[1]]]]
    with pytest.raises(ValueError, match="nested deeper than 3"):
        json_input.loads("[[[[1]]]]", max_depth=3)
    with pytest.raises(ValueError):
        json_input.loads(b"\xff")
