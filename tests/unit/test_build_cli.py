"""`mkkdumprd build` (and bare `mkkdumprd --target ...`) and `mkkdumprd savecore`, through
click's CliRunner, on the real Debian test kernel."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.errors import OperationError
from mkkdumprd.image.reader import read_file, read_members
from mkkdumprd.lifecycle.savecore import has_flat_dump, savecore
from tests.support.debian_kernel import Kernel


def _args(kernel: Kernel, out: Path, *extra: str) -> list[str]:
    return ["--kver", kernel.kver, "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
            "--add-drivers", "virtio_pci,virtio_blk", "--add-drivers", "ext4", *extra,
            "-o", str(out)]


def test_build_prints_summary(kernel: Kernel, tmp_path: Path) -> None:
    out = tmp_path / "img"
    r = CliRunner().invoke(main, ["build", *_args(kernel, out, "--target",
                                                  "ext4:UUID=0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e:/var/crash")])
    assert r.exit_code == 0, r.output
    # 13: with reed_solomon, which ramoops needs (modules.d/outcome; ramoops is not loaded)
    for word in (f"image:    {out}", "zstd", "unpacked", "entries:", "kernel modules: 13",
                 "time:", "target:   ext4 UUID=0b5e1c2d-3f4a-4b6c-8d9e-0f1a2b3c4d5e:/var/crash"):
        assert word in r.output
    assert len(read_members(out)) > 50


def test_bare_invocation_builds(kernel: Kernel, tmp_path: Path) -> None:
    out = tmp_path / "img"
    r = CliRunner().invoke(main, [*_args(kernel, out, "--target", "raw:/dev/vdb",
                                         "--compress", "gzip", "-q")])
    assert r.exit_code == 0, r.output
    assert r.output == ""
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    manifest = json.loads(read_file(out, "/etc/mkkdumprd/manifest.json"))
    assert manifest["config"]["target"] == {"kind": "raw", "device": "/dev/vdb",
                                            "fstype": None, "server": None,
                                            "path": "/var/crash"}


def test_config_file_and_target_override(kernel: Kernel, tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text("ext4 LABEL=dump\npath /crash\nfailure_action poweroff\n"
                    "final_action halt\n")
    out = tmp_path / "img"
    r = CliRunner().invoke(main, ["build", "-c", str(conf), *_args(kernel, out)])
    assert r.exit_code == 0, r.output
    lib = next(m.path for m in read_members(out) if m.path.endswith("/kdump/lib.sh"))
    text = read_file(out, lib).decode()
    assert "KDUMP_FAILURE_ACTION=poweroff" in text and "KDUMP_FINAL_ACTION=halt" in text
    assert read_file(out, "/etc/kdump.conf").decode().startswith(
        f"# resolved by mkkdumprd from {conf}\next4 LABEL=dump\npath /crash\n")
    r = CliRunner().invoke(main, ["build", "-c", str(conf), "--target", "raw:/dev/vdc",
                                  *_args(kernel, out, "--force")])
    assert r.exit_code == 0, r.output
    assert "raw /dev/vdc" in read_file(out, "/etc/kdump.conf").decode()


@pytest.mark.parametrize("argv, code, message", [
    (["--target", "floppy:/dev/fd0"], 2, "floppy"),
    (["--target", "raw"], 2, "raw"),
    (["--add-drivers", "virtio_blkk", "--target", "raw:/dev/vdb"], 2, "did you mean"),
    (["--target", "local"], 2, "--target local:DEVICE:PATH"),
])
def test_errors_are_one_line_with_exit_code(kernel: Kernel, tmp_path: Path, argv: list[str],
                                            code: int, message: str) -> None:
    r = CliRunner().invoke(main, ["build", *_args(kernel, tmp_path / "img"), *argv])
    assert r.exit_code == code, r.output
    assert "mkkdumprd: error: " in r.output and message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "img").exists()


def test_existing_output_needs_force(kernel: Kernel, tmp_path: Path) -> None:
    out = tmp_path / "img"
    out.write_text("keep")
    r = CliRunner().invoke(main, ["build", *_args(kernel, out, "--target", "raw:/dev/vdb")])
    assert r.exit_code == 2 and "use --force" in r.output
    assert out.read_text() == "keep"


def test_help_explains_options_and_spec_grammar() -> None:
    r = CliRunner().invoke(main, ["build", "--help"])
    assert r.exit_code == 0
    for word in ("--no-hostonly", "--add-drivers", "--compress", "raw:DEVICE",
                 "local[:DEVICE][:PATH]", "UUID=", "kdump.timeout=", "--sysroot"):
        assert word in r.output


def test_sysroot_default_kver_and_output(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib/modules/1.0").mkdir(parents=True)
    (root / "lib/modules/2.0").mkdir(parents=True)
    r = CliRunner().invoke(main, ["build", "--sysroot", str(root), "--no-hostonly",
                                  "--target", "raw:/dev/vdb"])
    assert r.exit_code == 2 and "give --kver" in r.output and "1.0, 2.0" in r.output


# ---- savecore -------------------------------------------------------------------------------

def _flat(payload: bytes, offset: int = 0) -> bytes:
    """A makedumpfile flattened stream: header block, (offset, size, data) records, end."""
    head = (b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)).ljust(4096, b"\0")
    return (head + struct.pack(">qq", offset, len(payload)) + payload
            + struct.pack(">qq", -1, -1))


def test_savecore_recovers_and_wipes(tmp_path: Path) -> None:
    dev = tmp_path / "raw.img"
    payload = b"\x7fELF vmcore bytes " * 100
    dev.write_bytes(_flat(payload).ljust(1 << 20, b"\0"))
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"raw /dev/disk/by-id/dump\npath {tmp_path / 'crash'}\n")
    # A regular file stands in for the device kdump.conf names.
    r = CliRunner().invoke(main, ["savecore", "-c", str(conf), "--device", str(dev)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("dump saved to ")
    vmcore = Path(r.output.split("dump saved to ", 1)[1].strip())
    assert vmcore.read_bytes() == payload
    assert vmcore.parent.parent == tmp_path / "crash"
    assert dev.read_bytes()[:512] == b"\0" * 512 and not has_flat_dump(dev)
    r = CliRunner().invoke(main, ["savecore", "-c", str(conf), "--device", str(dev)])
    assert r.exit_code == 0 and r.output.strip() == f"no dump on {dev}"


def test_savecore_device_option_and_second_dump_same_minute(tmp_path: Path) -> None:
    dev = tmp_path / "raw.img"
    for n in (1, 2):
        dev.write_bytes(_flat(b"dump %d" % n))
        res = savecore(dev, tmp_path / "out", now=1_700_000_000.0)
        assert res.vmcore is not None and res.vmcore.read_bytes() == b"dump %d" % n
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(names) == 2 and names[1] == names[0] + "-2"


def test_savecore_failure_keeps_the_device(tmp_path: Path) -> None:
    dev = tmp_path / "raw.img"
    data = _flat(b"x" * 100)
    dev.write_bytes(data)
    fake = tmp_path / "makedumpfile"
    fake.write_text("#!/bin/sh\necho 'makedumpfile: broken stream' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(OperationError, match=r"broken stream.*left as it was"):
        savecore(dev, tmp_path / "out", makedumpfile=str(fake))
    assert dev.read_bytes() == data
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(("cut", "why"), [
    (-16, "no end record"),                 # the end record is missing
    (-40, "past the end of the device"),    # the last record's data is cut
])
def test_truncated_stream_is_not_rebuilt_and_marked_failed(tmp_path: Path, cut: int,
                                                           why: str) -> None:
    dev = tmp_path / "raw.img"
    whole = _flat(b"page" * 64)
    dev.write_bytes(whole[:cut])
    fake = tmp_path / "makedumpfile"
    fake.write_text("#!/bin/sh\necho RAN >" + str(tmp_path / "ran") + "\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(OperationError, match=why) as info:
        savecore(dev, tmp_path / "out", makedumpfile=str(fake))
    assert "mkkdumprd-failed" in str(info.value)
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "out").exists()
    assert dev.read_bytes()[16:] == whole[:cut][16:]     # only the signature changed
    assert not has_flat_dump(dev)
    res = savecore(dev, tmp_path / "out", makedumpfile=str(fake))
    assert res.vmcore is None and res.message == f"no dump on {dev}"


def test_garbage_record_is_refused(tmp_path: Path) -> None:
    dev = tmp_path / "raw.img"
    dev.write_bytes(_flat(b"x")[:4096] + struct.pack(">qq", -5, 10) + bytes(64))
    with pytest.raises(OperationError, match=r"record 1 at byte 4096 is not a valid record"):
        savecore(dev, tmp_path / "out", makedumpfile="/nonexistent")


def test_rebuilt_vmcore_is_written_as_incomplete_first(tmp_path: Path) -> None:
    dev = tmp_path / "raw.img"
    dev.write_bytes(_flat(b"x" * 10))
    fake = tmp_path / "makedumpfile"
    # records the name it was given, then writes it
    fake.write_text('#!/bin/sh\necho "$2" >' + str(tmp_path / "arg") + '\ncat >"$2"\n')
    fake.chmod(0o755)
    res = savecore(dev, tmp_path / "out", makedumpfile=str(fake))
    assert (tmp_path / "arg").read_text().strip().endswith("/vmcore-incomplete")
    assert res.vmcore is not None and res.vmcore.name == "vmcore" and res.vmcore.exists()
    assert not list((tmp_path / "out").rglob("vmcore-incomplete"))


def test_savecore_without_raw_target(tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /var/crash\n")
    r = CliRunner().invoke(main, ["savecore", "-c", str(conf)])
    assert r.exit_code == 2 and "has no raw target; give the device with --device" in r.output
