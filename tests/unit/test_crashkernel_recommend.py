"""Sizing: the per-arch default tables, and the estimate's terms on real files."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import ARCHES, load_arch
from mkkdumprd.cli import main
from mkkdumprd.crashkernel import recommend as rec
from mkkdumprd.crashkernel.size import round_up
from mkkdumprd.host import Host
from mkkdumprd.image.compression import Compression
from mkkdumprd.image.spec import ImageSpec, data_entry, dir_entry, file_entry
from mkkdumprd.image.writer import write_image
from tests.support.debian_kernel import debian_kernel

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(("arch", "ram", "size"), [
    ("x86_64", 512 * M, 0), ("x86_64", G, 192 * M), ("x86_64", 2 * G, 192 * M),
    ("x86_64", 4 * G, 256 * M), ("x86_64", 63 * G, 256 * M), ("x86_64", 64 * G, 384 * M),
    ("x86_64", 2 * T, 512 * M),
    ("aarch64", G, 256 * M), ("aarch64", 8 * G, 320 * M), ("aarch64", 128 * G, 576 * M),
    ("ppc64le", G, 256 * M), ("ppc64le", 3 * G, 384 * M), ("ppc64le", 8 * G, 512 * M),
    ("ppc64le", 32 * G, G), ("ppc64le", 100 * G, 2 * G), ("ppc64le", 256 * G, 4 * G),
    ("s390x", 2 * G, 192 * M), ("s390x", 16 * G, 256 * M), ("s390x", 64 * G, 512 * M),
    ("riscv64", G, 256 * M), ("riscv64", 16 * G, 320 * M), ("riscv64", 1 * T, 576 * M),
    # RAM a little under a boundary still matches the upper range (128 MiB rounding)
    ("x86_64", 4 * G - 100 * M, 256 * M),
])
def test_table_lookup(arch: str, ram: int, size: int) -> None:
    assert rec.table_size(load_arch(arch), ram) == size


@pytest.mark.parametrize("arch", ARCHES)
def test_tables_are_monotone_and_sane(arch: str) -> None:
    info = load_arch(arch)
    prev = 0
    ram = G
    while ram <= 8 * T:
        size = rec.table_size(info, ram)
        assert size >= prev, (ram, size)
        assert 0 < size <= ram // 2, (ram, size)
        prev = size
        ram += ram // 4
    # measured minimums with a 1 MB busybox image (multiarch-kdump.md): the 1 GiB
    # default must clear them with room for a real image
    measured = {"aarch64": 64 * M, "ppc64le": 96 * M, "riscv64": 96 * M}
    if arch in measured:
        assert rec.table_size(info, G) >= 2 * measured[arch]


def _init_size_by_hand(path: Path) -> int:
    with path.open("rb") as f:
        f.seek(0x202)
        assert f.read(4) == b"HdrS"
        f.seek(0x260)
        (value,) = struct.unpack("<I", f.read(4))
    return int(value)


def test_kernel_term_is_bzimage_init_size(vmlinuz: Path) -> None:
    size, source = rec.kernel_facts(vmlinuz, load_arch("x86_64"))
    assert size == _init_size_by_hand(vmlinuz)
    assert 16 * M < size < 256 * M
    assert source == f"bzImage init_size of {vmlinuz}"


def test_kernel_term_falls_back_per_arch() -> None:
    size, source = rec.kernel_facts(None, load_arch("ppc64le"))
    assert size == load_arch("ppc64le").kernel_fallback
    assert "fallback" in source


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A capture image with real Debian modules in it, zstd-compressed by our writer."""
    k = debian_kernel()
    kos = sorted((k.kmoddir / "kernel" / "fs" / "ext4").glob("*.ko"))
    kos += sorted((k.kmoddir / "kernel" / "fs" / "jbd2").glob("*.ko"))
    assert kos
    spec = ImageSpec()
    spec.add(dir_entry("/tmp", "test"))
    spec.add(data_entry("/init", "#!/bin/sh\necho hi\n", "test", mode=0o755))
    spec.add(data_entry("/etc/big", os.urandom(300 * K), "test"))
    for ko in kos:
        rel = ko.relative_to(k.root)
        spec.add(file_entry(f"/{rel}", ko, "test"))
    out = tmp_path_factory.mktemp("img") / "initramfs-kdump.img"
    write_image(spec, out, compression=Compression.ZSTD)
    return out, kos


def test_image_terms_from_a_real_image(image: tuple[Path, list[Path]]) -> None:
    path, kos = image
    facts = rec.image_facts(path, 4096)
    assert facts.compressed == path.stat().st_size
    assert facts.module_count == len(kos)
    assert facts.modules == sum(k.stat().st_size for k in kos)
    files = [len("#!/bin/sh\necho hi\n"), 300 * K, *(k.stat().st_size for k in kos)]
    assert facts.unpacked == sum(round_up(s, 4096) for s in files)
    # /tmp, /init, /etc, /etc/big, the module files and their parent directories
    assert facts.entries > 3 + len(kos)


def _inputs(**kw: object) -> rec.EstimateInputs:
    base: dict[str, object] = dict(
        arch=load_arch("x86_64"), ram=4 * G, kernel_runtime=64 * M, kernel_source="k",
        image_compressed=3 * M, image_unpacked=9 * M, image_entries=200, image_source="i",
        modules=2 * M, module_count=5, cpus=1, luks=0)
    base.update(kw)
    return rec.EstimateInputs(**base)  # type: ignore[arg-type]


def test_estimate_terms_add_up() -> None:
    inp = _inputs()
    est = rec.estimate(inp)
    terms = {t.name: t.size for t in est.terms}
    assert terms["kernel"] == 64 * M
    assert terms["compressed"] == 3 * M
    assert terms["unpacked"] == 9 * M + 200 * K
    assert terms["modules"] == 2 * M
    assert terms["percpu"] == 353 * K
    assert terms["dynamic"] == load_arch("x86_64").kernel_dynamic
    # 4 GiB of 4 KiB pages, 2 bits each: 256 KiB of bitmaps; 32 x 96 B page headers
    assert terms["collector"] == 12 * M + 256 * K + 32 * 96
    before = sum(v for k, v in terms.items() if k != "memmap")
    assert terms["memmap"] == before * 64 // (4096 - 64)
    assert est.subtotal == sum(terms.values())
    assert est.margin == est.subtotal * 20 // 100 + 16 * M
    assert est.total == est.subtotal + est.margin
    assert est.rounded % (16 * M) == 0 and 0 <= est.rounded - est.total < 16 * M


def test_estimate_bitmap_is_capped_and_luks_outside_the_margin() -> None:
    big = {t.name: t.size for t in rec.estimate(_inputs(ram=4 * T)).terms}
    assert big["collector"] == 12 * M + 32 * M + 96 * (4 * T // (128 * M))
    plain = rec.estimate(_inputs())
    luks = rec.estimate(_inputs(luks=1 * G))
    assert luks.margin == plain.margin
    assert luks.subtotal == plain.subtotal + G


def test_estimate_grows_with_cpus_and_image() -> None:
    one = rec.estimate(_inputs()).total
    assert rec.estimate(_inputs(cpus=64)).total > one
    assert rec.estimate(_inputs(image_unpacked=90 * M)).total > one


def test_capture_cpus_from_cmdline_and_possible(tmp_path: Path) -> None:
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/possible").write_text("0-7,16-17\n")
    host = Host(tmp_path)
    assert rec.capture_cpus(load_arch("x86_64"), host) == 1          # one CPU online
    assert rec.capture_cpus(load_arch("aarch64"), host) == 1         # nr_cpus=1 stays
    # the loaded command line's (or the administrator's) nr_cpus= counts, the last one
    assert rec.capture_cpus(load_arch("x86_64"), host, ["nr_cpus=4"]) == 4
    assert rec.capture_cpus(load_arch("aarch64"), host, ["nr_cpus=4", "nr_cpus=2"]) == 2
    assert rec.capture_cpus(load_arch("x86_64"), host, ["nr_cpus=64"]) == 10  # possible
    # where the loader may raise nr_cpus to the CPUs online (an arch with max_cpus > 1;
    # x86_64 ships 1 for now), the reservation is sized for them
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-5\n")
    assert rec.capture_cpus(replace(load_arch("x86_64"), max_cpus=32), host) == 6
    assert rec.capture_cpus(replace(load_arch("x86_64"), max_cpus=4), host) == 4
    assert rec.capture_cpus(load_arch("x86_64"), host) == 1
    # ppc64le uses maxcpus=1: per-cpu areas still exist for every possible CPU
    assert rec.capture_cpus(load_arch("ppc64le"), host) == 10


def test_system_ram_from_iomem_then_meminfo(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/iomem").write_text(
        "00000000-00000fff : Reserved\n"
        "00001000-0009fbff : System RAM\n"
        "00100000-7ffdffff : System RAM\n"
        "  01000000-01ffffff : Kernel code\n"
        "100000000-17fffffff : System RAM\n")
    host = Host(tmp_path)
    ram, src = rec.system_ram(host)
    assert ram == (0x9FBFF - 0x1000 + 1) + (0x7FFDFFFF - 0x100000 + 1) + 2 * G
    assert src == "/proc/iomem System RAM"
    # non-root readers see zeroed addresses (issue 14 item 10: this read "RAM: 3 B"):
    # the online memory blocks in sysfs, else MemTotal
    (tmp_path / "proc/iomem").write_text("00000000-00000000 : Reserved\n"
                                         "00000000-00000000 : System RAM\n" * 3 +
                                         "  00000000-00000000 : Kernel code\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal:        2017204 kB\nMemFree: 1 kB\n")
    assert rec.system_ram(host) == (2017204 * K, "/proc/meminfo MemTotal")
    mem = tmp_path / "sys/devices/system/memory"
    mem.mkdir(parents=True)
    (mem / "block_size_bytes").write_text("8000000\n")
    for i, online in enumerate("1101"):
        (mem / f"memory{i}").mkdir()
        (mem / f"memory{i}/online").write_text(online + "\n")
    ram, src = rec.system_ram(host)
    assert ram == 3 * 0x8000000 and src.startswith("/sys/devices/system/memory online")


def test_unprivileged_recommend_on_this_machine() -> None:
    """As nobody, /proc/iomem hides its addresses here: the RAM is still right."""
    from tests.support import unprivileged

    unprivileged.require()
    with unprivileged.world_dir() as d:
        r = unprivileged.run_cli(["crashkernel", "recommend", "--json"], cwd=d)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ram_source"] != "/proc/iomem System RAM", doc
    meminfo = Path("/proc/meminfo").read_text()
    total = int(meminfo.split("MemTotal:")[1].split()[0]) * K
    assert total <= doc["ram"] < total * 2, (doc["ram"], total)
    assert doc["chosen"], doc


def test_recommend_table_only_and_with_estimate() -> None:
    info = load_arch("x86_64")
    r = rec.recommend(info, 2 * G, "--mem", None)
    assert r.chosen == 192 * M and r.estimate is None and "table default" in r.reason
    small = rec.recommend(info, 2 * G, "--mem", _inputs(ram=2 * G))
    assert small.estimate is not None and small.chosen == small.estimate.rounded
    big = rec.recommend(info, 2 * G, "--mem", _inputs(ram=2 * G, image_unpacked=150 * M))
    assert big.chosen > 192 * M and "above the table default" in big.reason
    none = rec.recommend(info, 512 * M, "--mem", None)
    assert none.chosen == 0 and "reserves nothing" in none.reason


def test_cli_recommend_on_real_files(vmlinuz: Path, image: tuple[Path, list[Path]]) -> None:
    path, kos = image
    res = CliRunner().invoke(main, [
        "crashkernel", "recommend", "--arch", "x86_64", "--mem", "2G", "--image", str(path),
        "--kernel", str(vmlinuz), "--luks-memory", "64M", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    terms = {t["name"]: t["bytes"] for t in data["estimate"]["terms"]}
    assert terms["kernel"] == _init_size_by_hand(vmlinuz)
    assert terms["compressed"] == path.stat().st_size
    assert terms["modules"] == sum(k.stat().st_size for k in kos)
    assert terms["luks"] == 64 * M
    assert data["chosen"] == data["estimate"]["rounded"]
    assert data["crashkernel"] == f"crashkernel={data['chosen'] >> 20}M"
    assert data["table_size"] == 192 * M
    human = CliRunner().invoke(main, [
        "crashkernel", "recommend", "--arch", "x86_64", "--mem", "2G", "--image", str(path),
        "--kernel", str(vmlinuz), "--luks-memory", "64M"])
    assert human.exit_code == 0
    assert "bzImage init_size" in human.stdout
    assert f"recommended:    crashkernel={data['chosen'] >> 20}M" in human.stdout
    assert "why:" in human.stdout


def test_cli_estimate_alias_and_missing_image(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["estimate", "--arch", "aarch64", "--mem", "8G", "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["chosen"] == 320 * M
    res = CliRunner().invoke(main, ["crashkernel", "recommend", "--mem", "8G",
                                    "--image", str(tmp_path / "nope.img")])
    assert res.exit_code == 2
    assert "does not exist" in res.stderr


def test_cli_showmem(tmp_path: Path) -> None:
    (tmp_path / "sys/kernel").mkdir(parents=True)
    (tmp_path / "sys/kernel/kexec_crash_size").write_text("201326592\n")
    res = CliRunner().invoke(main, ["showmem", "--root", str(tmp_path)])
    assert res.exit_code == 0 and "Reserved 192M" in res.stdout
    (tmp_path / "sys/kernel/kexec_crash_size").write_text("0\n")
    res = CliRunner().invoke(main, ["showmem", "--root", str(tmp_path)])
    assert res.exit_code == 1 and "crashkernel= is missing" in res.stderr


def test_cli_recommend_finds_the_running_kernels_image(tmp_path: Path, vmlinuz: Path,
                                                      image: tuple[Path, list[Path]]) -> None:
    import shutil

    kver = "6.1.0-56-amd64"
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text(kver + "\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal:        4030000 kB\n")
    (tmp_path / "var/lib/mkkdumprd").mkdir(parents=True)
    (tmp_path / "boot").mkdir()
    shutil.copy(image[0], tmp_path / f"var/lib/mkkdumprd/initramfs-{kver}kdump.img")
    shutil.copy(vmlinuz, tmp_path / f"boot/vmlinuz-{kver}")
    res = CliRunner().invoke(main, ["crashkernel", "recommend", "--root", str(tmp_path),
                                    "--arch", "x86_64", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ram"] == 4030000 * K and data["ram_source"] == "/proc/meminfo MemTotal"
    assert data["notes"] == [f"sized for the capture image /var/lib/mkkdumprd/initramfs-"
                             f"{kver}kdump.img of the running kernel {kver}"]
    terms = {t["name"]: t["bytes"] for t in data["estimate"]["terms"]}
    assert terms["kernel"] == _init_size_by_hand(vmlinuz)
    assert terms["compressed"] == image[0].stat().st_size
