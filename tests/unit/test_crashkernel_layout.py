"""Where the reservation comes from: plain, ,high + ,low or fixed + ,cma (layout.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.crashkernel import layout as lay
from mkkdumprd.host import Host
from mkkdumprd.image.spec import ImageSpec, data_entry
from mkkdumprd.image.writer import write_image
from tests.support.debian_kernel import debian_kernel

M, G = 1 << 20, 1 << 30
X86 = load_arch("x86_64")
KVER = "7.2.13+deb14-amd64"
SID_CONFIG = ("CONFIG_CMA=y\nCONFIG_CRASH_RESERVE=y\nCONFIG_CRASH_HOTPLUG=y\n"
              "CONFIG_MEMORY_HOTPLUG=y\nCONFIG_NR_CPUS=8192\n"
              "CONFIG_CRASH_MAX_MEMORY_RANGES=8192\nCONFIG_AMD_MEM_ENCRYPT=y\n")


@pytest.mark.parametrize(("argv", "keeps"), [
    (("makedumpfile", "-l", "--message-level", "7", "-d", "31"), False),
    (("makedumpfile", "-d31", "-c"), False),
    (("makedumpfile", "--dump-level=8"), False),
    (("makedumpfile", "-d", "17"), True),        # 16 + 1: user pages kept
    (("makedumpfile", "-c"), True),              # no -d: level 0 keeps everything
    (("cp",), True), (("dd", "bs=1M"), True),
])
def test_collectors_that_keep_user_pages(argv: tuple[str, ...], keeps: bool) -> None:
    assert lay.keeps_user_pages(argv) is keeps


def test_config_from_the_modules_dir_and_cma_support(tmp_path: Path) -> None:
    (tmp_path / f"usr/lib/modules/{KVER}").mkdir(parents=True)
    (tmp_path / f"usr/lib/modules/{KVER}/config").write_text(SID_CONFIG)
    cfg = lay.read_kernel_config(Host(tmp_path), KVER)
    assert cfg.path == f"/usr/lib/modules/{KVER}/config" and cfg.version == (7, 2)
    assert lay.cma_support(X86, cfg)[0]
    # x86 elfcorehdr with CRASH_HOTPLUG: (2 + 8192 + 8192) x 56 B
    assert lay.elfcorehdr_size(X86, cfg) == -(-(16386 * 56) // 4096) * 4096
    old = lay.read_kernel_config(Host(tmp_path), "6.12.0-1-amd64")
    assert not lay.cma_support(X86, old)[0]
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/config-6.16.0-1-amd64").write_text(SID_CONFIG)
    ok, why = lay.cma_support(X86, lay.read_kernel_config(Host(tmp_path), "6.16.0-1-amd64"))
    assert not ok and "6.17" in why
    assert not lay.cma_support(load_arch("aarch64"), cfg)[0]


def test_choose_layouts() -> None:
    cma = lay.choose(X86, 125 * M, 128 * M, 64 * M, 4 * G, 3 * G, True, "t")
    assert cma.kind == "cma" and cma.words == ("68M", "64M,cma") and cma.fixed <= 80 * M
    plain = lay.choose(X86, 125 * M, 128 * M, 64 * M, 4 * G, 3 * G, False, "t")
    assert plain.words == ("128M",) and plain.kind == "plain"
    high = lay.choose(X86, 125 * M, 128 * M, 64 * M, 64 * G, 2 * G, False, "t")
    assert high.words == ("128M,high", "72M,low") and high.low == 72 * M
    # a small low region: 4 GiB machine with a 512 MiB hole... and a big reservation
    tight = lay.choose(X86, 500 * M, 512 * M, 64 * M, 5 * G, 3 * G, False, "t")
    assert tight.kind == "high"
    assert lay.choose(load_arch("ppc64le"), 125 * M, 128 * M, 64 * M, 64 * G, None,
                      False, "t").kind == "plain"


def test_hardware_terms(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("flags\t\t: fpu sme sev sev_es\n")
    cfg = lay.KernelConfig("/c", {"AMD_MEM_ENCRYPT": "y"}, (7, 2))
    # an EPYC host that can encrypt but does not (Debian: not active by default)
    assert lay.hardware_terms(X86, Host(tmp_path), cfg) == []
    (tmp_path / "proc/cmdline").write_text("ro mem_encrypt=on\n")
    terms = lay.hardware_terms(X86, Host(tmp_path), cfg)
    assert [(t.name, t.size) for t in terms] == [("sme/sev", 64 * M)]
    assert lay.hardware_terms(X86, Host(tmp_path), lay.KernelConfig(None, {}, None)) == []
    (tmp_path / "proc/cmdline").write_text("ro\n")
    (tmp_path / "proc/cpuinfo").write_text("flags\t\t: fpu hypervisor sev\n")   # SEV guest
    assert [t.name for t in lay.hardware_terms(X86, Host(tmp_path), cfg)] == ["sme/sev"]
    arm = load_arch("aarch64")
    (tmp_path / "sys/bus/pci/drivers/mlx5_core").mkdir(parents=True)
    (tmp_path / "sys/devices/platform/arm-smmu-v3.0.auto").mkdir(parents=True)
    k64 = lay.KernelConfig("/c", {"ARM64_64K_PAGES": "y"}, (6, 12))
    assert [(t.name, t.size // M) for t in lay.hardware_terms(arm, Host(tmp_path), k64)] == \
        [("64k-pages", 100), ("arm-smmu", 384), ("mlx5", 200)]


@pytest.fixture
def sid_root(tmp_path: Path) -> Path:
    mods = tmp_path / f"usr/lib/modules/{KVER}"
    mods.mkdir(parents=True)
    (mods / "config").write_text(SID_CONFIG)
    (mods / "vmlinuz").write_bytes(debian_kernel().vmlinuz.read_bytes())
    spec = ImageSpec()
    spec.add(data_entry("/big", bytes(8 * M), "test"))
    write_image(spec, tmp_path / "capture.img")
    return tmp_path


def _rec(root: Path, *extra: str) -> dict[str, object]:
    r = CliRunner().invoke(main, ["crashkernel", "recommend", "--json", "--arch", "x86_64",
                                  "--mem", "4G", "--kver", KVER, "--image",
                                  str(root / "capture.img"), "--root", str(root), *extra])
    assert r.exit_code == 0, r.stderr
    data: dict[str, object] = json.loads(r.stdout)
    return data


def test_recommend_json_cma_and_opt_outs(sid_root: Path) -> None:
    data = _rec(sid_root)
    assert data["layout"] == "cma"
    fixed, cma = int(str(data["fixed_bytes"])), int(str(data["cma_bytes"]))
    assert data["cmdline"] == f"crashkernel={fixed >> 20}M crashkernel={cma >> 20}M,cma"
    assert fixed <= 80 * M and data["low_bytes"] == 0
    names = [str(t["name"]) for t in data["why"]]  # type: ignore[attr-defined]
    assert names[0] == "kernel" and names[-1] == "layout"
    assert _rec(sid_root, "--no-cma")["layout"] == "plain"
    (sid_root / "etc").mkdir()
    (sid_root / "etc/kdump.conf").write_text("core_collector makedumpfile -l -d 1\n")
    no = _rec(sid_root)
    assert no["layout"] == "plain" and no["cma_bytes"] == 0
    assert "keeps user pages" in str(no["why"])


def test_recommend_human_output_explains_in_two_lines(sid_root: Path) -> None:
    r = CliRunner().invoke(main, ["crashkernel", "recommend", "--arch", "x86_64", "--mem",
                                  "4G", "--kver", KVER, "--image",
                                  str(sid_root / "capture.img"), "--root", str(sid_root)])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("recommended:"))
    assert ",cma" in lines[i]
    assert lines[i + 1].startswith("why:") and "CMA" in lines[i + 1]
    assert lines[i + 2].strip().startswith("size:") and len(lines) == i + 3


@pytest.mark.parametrize("arch", ["aarch64", "ppc64le", "s390x", "riscv64"])
def test_non_x86_capture_cmdline_drops_mce(arch: str) -> None:
    from mkkdumprd.loader.cmdline import capture_cmdline

    info = load_arch(arch)
    words = capture_cmdline("ro mce=2 mce=off console=ttyS0", info.cmdline_remove,
                            info.cmdline_append).split()
    assert not [w for w in words if w.startswith("mce")] and "console=ttyS0" in words
