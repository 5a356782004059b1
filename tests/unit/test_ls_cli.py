"""`mkkdumprd ls`: table, --json, --why from the image's manifest, and errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import ImageSpec, Kind, data_entry, device_entry, symlink_entry
from mkkdumprd.image.writer import write_image

MANIFEST = "/etc/mkkdumprd/manifest.json"


def build(tmp_path: Path, with_manifest: bool, early: bool = False) -> Path:
    spec = ImageSpec()
    spec.add(data_entry("/init", "#!/bin/sh\n", "generated /init", mode=0o755))
    spec.add(symlink_entry("/bin", "usr/bin", "merged /usr"))
    spec.add(device_entry("/dev/console", Kind.CHARDEV, 5, 1, "console node"))
    if with_manifest:
        reasons = {str(e.path): e.reason for e in spec.complete()}
        spec.add(data_entry(MANIFEST, json.dumps({"entries": reasons}), "build manifest"))
    early_spec = None
    if early:
        early_spec = ImageSpec()
        early_spec.add(data_entry("/kernel/x86/microcode/GenuineIntel.bin", b"u", "ucode"))
    img = tmp_path / "initrd.img"
    write_image(spec, img, compression=Compression.ZSTD, early=early_spec)
    return img


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_table_per_segment(tmp_path: Path) -> None:
    img = build(tmp_path, with_manifest=False, early=True)
    code, out, _ = run("ls", str(img))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "segment 0: uncompressed cpio, 4 entries"
    assert lines[4].endswith("/kernel/x86/microcode/GenuineIntel.bin")
    assert lines[5] == ""
    assert lines[6] == "segment 1: zstd cpio, 4 entries"
    assert lines[7].split() == ["lrwxrwxrwx", "0", "0", "7", "/bin", "->", "usr/bin"]
    assert lines[8].split() == ["drwxr-xr-x", "0", "0", "0", "/dev"]
    assert lines[9].split() == ["crw-------", "0", "0", "5,", "1", "/dev/console"]
    assert lines[10].split() == ["-rwxr-xr-x", "0", "0", "10", "/init"]


def test_json(tmp_path: Path) -> None:
    img = build(tmp_path, with_manifest=False)
    code, out, _ = run("ls", "--json", str(img))
    assert code == 0
    doc = json.loads(out)
    assert doc[0] == {"segment": 0, "compression": "zstd", "path": "/bin", "type": "symlink",
                      "mode": "0777", "size": 7, "target": "usr/bin"}
    console = next(d for d in doc if d["path"] == "/dev/console")
    assert console["type"] == "chardev" and console["mode"] == "0600"
    assert console["rdev"] == [5, 1]
    assert [d["path"] for d in doc] == ["/bin", "/dev", "/dev/console", "/init"]


def test_why_shows_reasons_from_the_manifest(tmp_path: Path) -> None:
    img = build(tmp_path, with_manifest=True)
    code, out, err = run("ls", "--why", str(img))
    assert code == 0, err
    assert err == ""
    init = next(line for line in out.splitlines() if line.split()[4:5] == ["/init"])
    assert init.endswith("# generated /init")
    dev = next(line for line in out.splitlines() if line.split()[4:5] == ["/dev"])
    assert dev.endswith("# parent directory")
    manifest_line = next(line for line in out.splitlines() if MANIFEST in line)
    assert manifest_line.endswith("# -")  # the manifest does not list itself
    code, out, _ = run("ls", "--why", "--json", str(img))
    why = {d["path"]: d["why"] for d in json.loads(out)}
    assert why["/bin"] == "merged /usr"
    assert why["/dev/console"] == "console node"
    assert why[MANIFEST] is None


def test_why_without_manifest_says_so(tmp_path: Path) -> None:
    img = build(tmp_path, with_manifest=False)
    code, out, err = run("ls", "--why", str(img))
    assert code == 0
    assert f"has no {MANIFEST}" in err
    assert "/init" in out


def test_errors_exit_2_with_one_sentence(tmp_path: Path) -> None:
    code, _, err = run("ls", str(tmp_path / "missing.img"))
    assert code == 2
    assert err.strip() == f"mkkdumprd: error: {tmp_path / 'missing.img'} does not exist; " \
        "give the path of an initramfs image"
    junk = tmp_path / "junk"
    junk.write_text("#!/bin/sh\n")
    code, _, err = run("ls", str(junk))
    assert code == 2
    assert err.startswith(f"mkkdumprd: error: {junk} is not an initramfs")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad-manifest.img"
    spec = ImageSpec()
    spec.add(data_entry(MANIFEST, "{not json", "broken"))
    write_image(spec, bad)
    code, _, err = run("ls", "--why", str(bad))
    assert code == 2
    assert "is not a valid mkkdumprd manifest" in err


def test_names_that_are_not_utf8_are_shown_escaped(tmp_path: Path) -> None:
    spec = ImageSpec()
    spec.add(data_entry("/etc/caf\udce9", b"x", "latin-1 name"))
    img = tmp_path / "img"
    write_image(spec, img, compression=Compression.NONE)
    code, out, _ = run("ls", str(img))
    assert code == 0
    assert out.splitlines()[-1].endswith("/etc/caf\\xe9")
