"""Cross builds: `mkkdumprd build --arch aarch64 --sysroot DIR` from a real Debian arm64 root
(tests/support/foreign_sysroot.py: bookworm arm64 packages unpacked with dpkg-deb -x), and
wrong-architecture binaries and libraries as clear errors naming the file, both ways."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.elf.closure import ElfError
from mkkdumprd.elf.entries import binary_entries
from mkkdumprd.host import Host
from mkkdumprd.image.reader import read_file, read_members
from tests.support.debian_kernel import Kernel
from tests.support.foreign_sysroot import Sysroot, foreign_sysroot

pytestmark = pytest.mark.multiarch

EM_AARCH64 = 183
EM_X86_64 = 62


@pytest.fixture(scope="module")
def arm64() -> Sysroot:
    return foreign_sysroot("aarch64")




def _machine(data: bytes) -> int | None:
    if data[:4] != b"\x7fELF":
        return None
    return int.from_bytes(data[18:20], "little")


def _build(*argv: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["build", "--no-hostonly", "--target",
                                  "ext4:/dev/vda:/var/crash", *argv])
    return r.exit_code, r.output


def test_aarch64_image_from_a_debian_arm64_root(arm64: Sysroot, tmp_path: Path) -> None:
    out = tmp_path / "cap.img"
    code, output = _build("--arch", "arm64", "--sysroot", str(arm64.root), "--add-drivers",
                          "virtio_pci,virtio_blk,ext4", "-o", str(out))
    assert code == 0, output
    assert f"kernel:   {arm64.kver} (aarch64)" in output
    members = {m.path: m for m in read_members(out)}
    elves = {}
    for path, m in members.items():
        if m.kind == "file":
            mach = _machine(read_file(out, path)[:20])
            if mach is not None:
                elves[path] = mach
    # Everything ELF in the image is arm64: binaries, libraries, ld.so, kernel modules.
    assert set(elves.values()) == {EM_AARCH64}, elves
    for want in ("/bin/busybox", "/usr/bin/makedumpfile",
                 "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
                 "/lib/aarch64-linux-gnu/libc.so.6"):
        assert any(p.endswith(want.rsplit("/", 1)[1]) for p in elves), want
    # ... and they are the sysroot's files, byte for byte.
    assert read_file(out, "/bin/busybox") == (arm64.root / "bin/busybox").read_bytes()
    mods = read_file(out, f"/lib/modules/{arm64.kver}/modules.load").decode().split()
    assert {Path(m).name for m in mods} >= {"virtio_blk.ko", "ext4.ko", "jbd2.ko"}
    assert members["/bin/sh"].kind == "symlink"


def _small_arm64_root(arm64: Sysroot, dest: Path) -> Path:
    """The parts of the arm64 root a build reads (binaries, libc, modules): a cheap copy."""
    for rel in ("bin/busybox", "usr/bin/makedumpfile", "sbin/vmcore-dmesg"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(arm64.root / rel, dest / rel)
    for rel in ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"):
        shutil.copytree(arm64.root / rel, dest / rel, symlinks=True,
                        ignore=shutil.ignore_patterns("perl*", "gconv", "*.a"))
    (dest / "lib/ld-linux-aarch64.so.1").symlink_to("aarch64-linux-gnu/ld-linux-aarch64.so.1")
    return dest


def test_x86_binary_in_an_aarch64_build_names_it(arm64: Sysroot, tmp_path: Path) -> None:
    root = _small_arm64_root(arm64, tmp_path / "root")
    (root / "bin/busybox").unlink()
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", root / "bin/busybox")
    kmoddir = arm64.root / "lib/modules" / arm64.kver
    code, output = _build("--arch", "aarch64", "--sysroot", str(root), "--kver", arm64.kver,
                          "--kmoddir", str(kmoddir), "-o", str(tmp_path / "x.img"))
    assert code == 2, output
    assert output.count("\n") == 1 and "Traceback" not in output
    assert f"/bin/busybox in sysroot {root} is a 64-bit EM_X86_64 binary" in output
    assert "EM_AARCH64 as requested (--arch)" in output


def test_x86_library_in_an_aarch64_closure_names_it(arm64: Sysroot, tmp_path: Path) -> None:
    root = _small_arm64_root(arm64, tmp_path / "root")
    libz = root / "lib/aarch64-linux-gnu/libz.so.1"
    real = libz.resolve()
    real.unlink()
    shutil.copy2(Path("/lib/x86_64-linux-gnu/libz.so.1").resolve(), real)
    view = Host(root)
    with pytest.raises(ElfError) as e:
        binary_entries(["/usr/bin/makedumpfile"], view, "test", machine="aarch64")
    msg = str(e.value)
    assert "cannot find libz.so.1" in msg
    assert "/lib/aarch64-linux-gnu/libz.so.1 is a 64-bit EM_X86_64 file" in msg
    assert "not 64-bit EM_AARCH64 (a library of another architecture)" in msg
    # Without the bad library the same closure resolves, all inside the root.
    real.unlink()
    shutil.copy2(arm64.root / "lib/aarch64-linux-gnu" / real.name, real)
    paths = {str(x.path) for x in binary_entries(["/usr/bin/makedumpfile"], view, "test",
                                                 machine="aarch64")}
    assert "/lib/aarch64-linux-gnu/libz.so.1" in paths


def test_arm64_binary_in_an_x86_build_names_it(arm64: Sysroot, kernel: Kernel,
                                               tmp_path: Path) -> None:
    # The live system with one arm64 file on PATH: an x86 image must refuse it.
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy2(arm64.root / "usr/bin/makedumpfile", root / "usr/bin/makedumpfile")
    with pytest.raises(ElfError) as e:
        binary_entries(["/usr/bin/makedumpfile"], Host(root), "test", machine="x86_64")
    assert f"/usr/bin/makedumpfile in sysroot {root} is a 64-bit EM_AARCH64 binary, " \
           "not 64-bit EM_X86_64" in str(e.value)


def test_aarch64_build_from_the_x86_host_is_refused(kernel: Kernel, tmp_path: Path) -> None:
    # --arch without a foreign root: the host's own busybox would land in an arm64 image.
    code, output = _build("--arch", "aarch64", "--kver", kernel.kver, "--kmoddir",
                          str(kernel.kmoddir), "--add-drivers", "virtio_blk",
                          "-o", str(tmp_path / "x.img"))
    assert code == 2, output
    assert "64-bit EM_X86_64 binary, not 64-bit EM_AARCH64 as requested (--arch)" in output
    assert "use a --sysroot of that architecture" in output
    assert not (tmp_path / "x.img").exists()


# Smallest crashkernel= that gave a vmcore (riscv64: reached the collector) with the image
# built as below and the arch's Debian kernel, 1 GiB guest under QEMU TCG; the next step
# down (16 MiB less) ran out of memory. bench/multiarch_crashkernel_min.py, 2026-11-26.
MEASURED_MIN = {"aarch64": 80 << 20, "ppc64le": 112 << 20, "riscv64": 128 << 20}


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(MEASURED_MIN))
def test_recommend_covers_the_measured_minimum(arch: str, tmp_path: Path) -> None:
    import json

    root = foreign_sysroot(arch)
    out = tmp_path / "cap.img"
    code, output = _build("--arch", arch, "--sysroot", str(root.root), "--add-drivers",
                          "virtio_pci,virtio_mmio,virtio_blk,ext4", "-o", str(out))
    assert code == 0, output
    r = CliRunner().invoke(main, ["crashkernel", "recommend", "--arch", arch, "--mem", "1G",
                                  "--image", str(out), "--kernel", str(root.kernel),
                                  "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    # At least the measured minimum plus one 16 MiB step: the figure is from one guest.
    assert rec["chosen"] >= MEASURED_MIN[arch] + (16 << 20), rec["chosen"]
    # ... and well under the table, or the estimate would be pointless.
    assert rec["chosen"] < rec["table_size"]


def test_x86_modules_in_an_aarch64_build_are_refused(arm64: Sysroot, kernel: Kernel,
                                                     tmp_path: Path) -> None:
    code, output = _build("--arch", "aarch64", "--sysroot", str(arm64.root), "--kver",
                          kernel.kver, "--kmoddir", str(kernel.kmoddir), "--add-drivers",
                          "virtio_blk", "-o", str(tmp_path / "x.img"))
    assert code == 2, output
    assert output.count("\n") == 1 and "Traceback" not in output
    assert f"kernel module {kernel.kmoddir}/kernel/" in output
    assert "is a 64-bit EM_X86_64 object, not 64-bit EM_AARCH64 for --arch aarch64" in output
    assert not (tmp_path / "x.img").exists()


@pytest.mark.parametrize("codec", ["gzip", "xz", "zstd", "none"])
def test_module_head_reads_through_compression(arm64: Sysroot, tmp_path: Path,
                                               codec: str) -> None:
    import gzip
    import lzma

    import zstandard

    from mkkdumprd.image.spec import Codec
    from mkkdumprd.kmod.arch_check import module_head

    ko = next((arm64.root / "lib/modules" / arm64.kver).rglob("virtio_blk.ko"))
    data = ko.read_bytes()
    packed = {"gzip": gzip.compress, "xz": lzma.compress,
              "zstd": zstandard.ZstdCompressor().compress, "none": bytes}[codec](data)
    p = tmp_path / f"m.ko.{codec}"
    p.write_bytes(packed)
    head = module_head(Host.this_machine(), p, Codec(codec))
    assert head == data[:20] and _machine(head) == EM_AARCH64


def test_arch_defaults_to_the_sysroots_own(arm64: Sysroot, tmp_path: Path) -> None:
    from mkkdumprd.elf.closure import arch_of

    assert arch_of(Host(arm64.root)) == "aarch64"
    assert arch_of(Host(Path("/"))) == "x86_64"
    assert arch_of(Host(tmp_path)) is None          # no shell: this machine's arch
    code, output = _build("--sysroot", str(arm64.root), "--add-drivers", "virtio_blk",
                          "-o", str(tmp_path / "cap.img"))
    assert code == 0, output
    assert f"kernel:   {arm64.kver} (aarch64)" in output
