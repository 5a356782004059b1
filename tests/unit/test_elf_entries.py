"""Binaries as image entries: symlink chains kept, files at real paths, sysroots honoured."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.elf.closure import ElfError, Resolver, resolve_closure
from mkkdumprd.elf.entries import binary_entries, find_binary, path_entries
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, ImageSpec, Kind
from tests.support.elf_fixtures import build_lib, build_prog, needs_gcc
from tests.support.sysroot import make_sysroot

HOST = Host(Path("/"))
MULTIARCH = Path("/usr/lib/x86_64-linux-gnu")
pytestmark = pytest.mark.skipif(not (MULTIARCH / "libc.so.6").exists(),
                                reason="needs a Debian x86_64 host")


def by_path(entries: list[Entry]) -> dict[str, Entry]:
    return {str(e.path): e for e in entries}


def test_host_binary_entries_keep_symlink_chains() -> None:
    entries = binary_entries(["/usr/bin/ls"], HOST, "core utility")
    got = by_path(entries)
    ls = got["/usr/bin/ls"]
    assert ls.kind is Kind.FILE and ls.reason == "core utility"
    assert ls.mode == os.stat("/usr/bin/ls").st_mode & 0o7777
    # Each hop the loader takes exists in the image, and the file sits at its real path.
    for p in ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libpcre2-8.so.0"):
        chain = path_entries(HOST, p, "x")
        assert chain[-1].kind is Kind.FILE
        assert chain[-1].path == PurePosixPath(os.path.realpath(p))
        for e in chain:
            assert str(e.path) in got
    for link in ("/lib64", "/lib"):
        if os.path.islink(link):
            assert got[link].kind is Kind.SYMLINK
            assert got[link].target == os.readlink(link)
    libc = got[str(MULTIARCH / "libc.so.6")]
    assert libc.reason == "library of /usr/bin/ls"
    assert libc.source == MULTIARCH / "libc.so.6"
    spec = ImageSpec()
    spec.extend(entries)
    spec.extend(binary_entries(["sh", "/usr/bin/true"], HOST, "shell"))
    spec.complete()  # no file under a path that is a symlink in the image


def test_find_binary() -> None:
    assert find_binary(HOST, "sh") is not None
    assert find_binary(HOST, "no-such-binary-xyz") is None
    with pytest.raises(ElfError, match="not on the PATH"):
        binary_entries(["no-such-binary-xyz"], HOST, "x")


@needs_gcc
def test_versioned_symlink_chain(tmp_path: Path) -> None:
    real = build_lib(tmp_path / "lib/libv.so.1.2.3", soname="libv.so.1")
    (tmp_path / "lib/libv.so.1").symlink_to("libv.so.1.2.3")
    prog = build_prog(tmp_path / "bin/prog", (real,), ("-Wl,-rpath," + str(tmp_path / "lib"),))
    got = by_path(binary_entries([str(prog)], HOST, "test"))
    link = got[str(tmp_path / "lib/libv.so.1")]
    assert link.kind is Kind.SYMLINK and link.target == "libv.so.1.2.3"
    assert got[str(real)].kind is Kind.FILE


def make_debian_sysroot(root: Path) -> None:
    """ls with its libraries from this (merged-/usr Debian) machine, no ld.so.cache, and
    an ld.so.conf that includes a vendor directory."""
    make_sysroot(root, ["/usr/bin/ls"], ld_so_cache=False, ld_so_conf={
        "/etc/ld.so.conf": "include /etc/ld.so.conf.d/*.conf\n",
        "/etc/ld.so.conf.d/vendor.conf": "# vendor libs\n/opt/vendor/lib\n",
    })


def test_sysroot_lookups_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_debian_sysroot(root)
    view = Host(root)
    c = resolve_closure(["/bin/ls"], view)
    assert [str(p) for p in c.objects] == [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libselinux.so.1",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libpcre2-8.so.0",
    ]
    for e in binary_entries(["/bin/ls"], view, "test"):
        if e.kind is Kind.FILE:
            assert e.source is not None and e.source.is_relative_to(root)
            assert e.source == root / str(e.path).lstrip("/")
    # Take away a library: the host's copy must not be used instead.
    (root / "usr/lib/x86_64-linux-gnu/libselinux.so.1").unlink()
    with pytest.raises(ElfError, match=r"libselinux\.so\.1"):
        resolve_closure(["/bin/ls"], view)


def test_sysroot_target_facts(tmp_path: Path) -> None:
    deb = tmp_path / "deb"
    make_debian_sysroot(deb)
    r = Resolver(Host(deb))
    elf = r.elf("/bin/ls")
    assert elf is not None
    t = r.platform(elf, elf.interp)
    assert t.lib == "lib/x86_64-linux-gnu"
    assert [str(d) for d in t.default_dirs] == [
        "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"]
    assert t.hwcaps == ()  # a sysroot's CPU is unknown: baseline only
    fed = tmp_path / "fed"
    (fed / "usr/lib64").mkdir(parents=True)
    (fed / "lib64").symlink_to("usr/lib64")
    shutil.copy(MULTIARCH / "ld-linux-x86-64.so.2", fed / "usr/lib64/ld-linux-x86-64.so.2")
    t = Resolver(Host(fed)).platform(elf, elf.interp)
    assert t.lib == "lib64"
    assert [str(d) for d in t.default_dirs] == ["/lib64", "/usr/lib64"]


def test_host_target_matches_ld_so_help() -> None:
    rtld = "/lib64/ld-linux-x86-64.so.2"
    out = subprocess.run([rtld, "--help"], capture_output=True, text=True).stdout
    system = [ln.split()[0] for ln in out.splitlines() if "(system search path)" in ln]
    hwcaps = [ln.split()[0] for ln in out.splitlines() if "(supported, searched)" in ln
              and ln.strip().startswith("x86-64-v")]
    r = Resolver(HOST)
    elf = r.elf("/usr/bin/true")
    assert elf is not None
    t = r.platform(elf, elf.interp)
    assert [str(d) for d in t.default_dirs] == system
    assert list(t.hwcaps) == hwcaps


@needs_gcc
@pytest.mark.skipif(shutil.which("ldconfig") is None, reason="ldconfig is not installed")
def test_sysroot_ld_so_conf_then_cache(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_debian_sysroot(root)
    vendor = build_lib(root / "opt/vendor/lib/libvendor.so.2")
    build_prog(root / "usr/bin/vendortool", (vendor,))
    view = Host(root)
    # No ld.so.cache: the ld.so.conf directories stand in for what ldconfig would list.
    c = resolve_closure(["/usr/bin/vendortool"], view)
    assert PurePosixPath("/opt/vendor/lib/libvendor.so.2") in c.objects
    # With the sysroot's own cache (written by the real ldconfig), it is found there, and
    # the image then needs the cache, since /opt/vendor/lib is not a default directory.
    subprocess.run(["ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)
    assert (root / "etc/ld.so.cache").exists()
    (root / "etc/ld.so.conf").unlink()  # proves the cache, not the conf, is used now
    c = resolve_closure(["/usr/bin/vendortool"], view)
    assert PurePosixPath("/opt/vendor/lib/libvendor.so.2") in c.objects
    got = by_path(binary_entries(["/usr/bin/vendortool"], view, "vendor"))
    assert "/etc/ld.so.cache" in got
    assert "libvendor.so.2" in got["/etc/ld.so.cache"].reason


def _as_arm64(src: Path, dst: Path) -> None:
    """A copy of an x86_64 object relabelled as aarch64 (machine and interpreter only):
    enough for the loader's lookup rules, which never run the code."""
    data = bytearray(src.read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    old = b"/lib64/ld-linux-x86-64.so.2\0"
    i = data.find(old)
    if i >= 0:
        data[i:i + len(old)] = b"/lib/ld-linux-aarch64.so.1\0\0"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))


def test_cross_arch_sysroot(tmp_path: Path) -> None:
    root = tmp_path / "arm64"
    lib, ulib = root / "lib/aarch64-linux-gnu", root / "usr/lib/aarch64-linux-gnu"
    _as_arm64(MULTIARCH / "ld-linux-x86-64.so.2", lib / "ld-linux-aarch64.so.1")
    (root / "lib/ld-linux-aarch64.so.1").symlink_to("aarch64-linux-gnu/ld-linux-aarch64.so.1")
    # The first default directory holds an x86_64 libc: the loader skips it.
    shutil.copy(MULTIARCH / "libc.so.6", lib / "libc.so.6")
    _as_arm64(MULTIARCH / "libc.so.6", ulib / "libc.so.6")
    for name in ("libselinux.so.1", "libpcre2-8.so.0"):
        _as_arm64(MULTIARCH / name, ulib / name)
    _as_arm64(Path("/usr/bin/ls"), root / "usr/bin/ls")
    view = Host(root)
    with pytest.raises(ElfError, match="EM_AARCH64 binary, not 64-bit EM_X86_64"):
        resolve_closure(["/usr/bin/ls"], view, machine="x86_64")
    c = resolve_closure(["/usr/bin/ls"], view, machine="aarch64")
    assert [str(p) for p in c.objects] == [
        "/lib/ld-linux-aarch64.so.1",
        "/usr/lib/aarch64-linux-gnu/libselinux.so.1",
        "/usr/lib/aarch64-linux-gnu/libc.so.6",
        "/usr/lib/aarch64-linux-gnu/libpcre2-8.so.0",
    ]
    r = Resolver(view, "aarch64")
    elf = r.elf("/usr/bin/ls")
    assert elf is not None
    t = r.platform(elf, elf.interp)
    assert (t.lib, t.platform, t.cache_flags) == ("lib/aarch64-linux-gnu", "aarch64",
                                                  frozenset({0x0A03}))


def test_resolver_paths_match_hostview(tmp_path: Path) -> None:
    root = tmp_path
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu/libz.so.1.2").write_text("x")
    (root / "lib").symlink_to("usr/lib")
    (root / "usr/lib64").symlink_to("/lib/../usr/lib/x86_64-linux-gnu")
    (root / "lib64").symlink_to("/usr/lib64")
    (root / "usr/lib/x86_64-linux-gnu/libz.so.1").symlink_to("libz.so.1.2")
    (root / "usr/lib/x86_64-linux-gnu/up").symlink_to("../../..")
    (root / "loop").symlink_to("loop")
    view = Host(root)
    r = Resolver(view)
    for p in ("/", "/lib", "/lib/x86_64-linux-gnu/libz.so.1", "/lib64/libz.so.1",
              "/lib64/../lib64/./libz.so.1", "/lib/x86_64-linux-gnu/up/lib64/missing/x",
              "/nope/../lib", "/lib/x86_64-linux-gnu/up/../../.."):
        assert r.real(p) == view.resolve(p), p
    with pytest.raises(ElfError, match="too many levels of symbolic links"):
        r.real("/loop/x")
