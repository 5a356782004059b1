"""Module closure on fake module trees: deps, aliases, softdeps (cycles too), built-ins,
omit, modprobe.d, and errors. Where kmod's behaviour is the question, the same fake tree
is also handed to the real depmod + modprobe and the answers compared."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.image.spec import Codec
from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.index import ModuleDirMissing, ModuleIndex, ModuleNotFound, find_kmoddir
from tests.support.fake_kmod import ModinfoSpec, write_builtin, write_depmod_text, write_module

KVER = "6.6.0-test"

# name -> (relpath, modinfo); deps given by modpost's `depends=`.
TREE: dict[str, tuple[str, ModinfoSpec]] = {
    "core": ("kernel/lib/core.ko", {"depends": ""}),
    "mid": ("kernel/lib/mid.ko", {"depends": "core"}),
    "top": ("kernel/drivers/top.ko", {"depends": "mid,core", "alias": "top-alias"}),
    "virtio_pci": ("kernel/drivers/virtio/virtio_pci.ko.xz",
                   {"depends": "core", "alias": ["pci:v00001AF4d*sv*sd*bc*sc*i*"],
                    "firmware": ["virtio/fw.bin"]}),
    "nic_a": ("kernel/drivers/net/nic-a.ko.zst", {"depends": "", "alias": ["net-card-*"]}),
    "nic_b": ("kernel/drivers/net/nic_b.ko.gz", {"depends": "", "alias": ["net-card-[0-9]"]}),
    "pre1": ("kernel/fs/pre1.ko", {"depends": ""}),
    "post1": ("kernel/fs/post1.ko", {"depends": "core"}),
    "fsx": ("kernel/fs/fsx.ko", {"depends": "mid", "alias": "fs-fsx",
                                 "softdep": ["pre: pre1 post: post1", "pre: ignored"]}),
    "ignored": ("kernel/fs/ignored.ko", {"depends": ""}),
    "cyc_a": ("kernel/misc/cyc_a.ko", {"depends": "", "softdep": "pre: cyc-b"}),
    "cyc_b": ("kernel/misc/cyc_b.ko", {"depends": "", "softdep": "pre: cyc_a post: cyc_c"}),
    "cyc_c": ("kernel/misc/cyc_c.ko", {"depends": "cyc_a"}),
    "uses_builtin": ("kernel/misc/uses_builtin.ko", {"depends": "",
                                                     "softdep": "pre: crypto-bi"}),
}
BUILTIN = ["bi", "ext9"]
BUILTIN_ALIASES = [("bi", "crypto-bi"), ("ext9", "fs-ext9")]


def _make_tree(root: Path, index: bool) -> Path:
    kmoddir = root / "lib" / "modules" / KVER
    for _name, (rel, info) in TREE.items():
        write_module(kmoddir, rel, info)
    write_builtin(kmoddir, BUILTIN, BUILTIN_ALIASES)
    (kmoddir / "modules.order").write_text(
        "".join(rel.split(".ko")[0] + ".ko\n" for rel, _ in TREE.values()))
    if index:
        deps = {
            TREE[n][0]: [TREE[d][0] for d in ds] for n, ds in {
                "core": [], "mid": ["core"], "top": ["mid", "core"], "virtio_pci": ["core"],
                "nic_a": [], "nic_b": [], "pre1": [], "post1": ["core"],
                "fsx": ["mid", "core"], "ignored": [], "cyc_a": [], "cyc_b": [],
                "cyc_c": ["cyc_a"], "uses_builtin": [],
            }.items()}
        aliases = []
        softdeps = []
        for name, (_rel, info) in TREE.items():
            assert isinstance(info, Mapping)
            for key, val in info.items():
                for v in [val] if isinstance(val, str) else val:
                    if key == "alias":
                        aliases.append((v, name))
                    elif key == "softdep":
                        softdeps.append((name, v))
        write_depmod_text(kmoddir, deps, aliases, softdeps)
    return kmoddir


@pytest.fixture(params=["index", "modinfo"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> ModuleIndex:
    kmoddir = _make_tree(tmp_path, index=request.param == "index")
    idx = ModuleIndex.load(kmoddir, KVER, jobs=1)
    assert idx.source == request.param
    return idx


def _names(index: ModuleIndex, *names: str, omit: tuple[str, ...] = ()) -> list[str]:
    return [m.name for m in resolve_modules(index, names, omit=omit).modules]


def test_hard_deps_load_first(index: ModuleIndex) -> None:
    assert _names(index, "top") == ["core", "mid", "top"]


def test_dash_and_underscore_are_the_same(index: ModuleIndex) -> None:
    assert _names(index, "virtio-pci") == ["core", "virtio_pci"]
    assert _names(index, "top_alias") == ["core", "mid", "top"]
    assert _names(index, "nic-a") == ["nic_a"]


def test_modalias_glob_and_every_matching_module(index: ModuleIndex) -> None:
    assert _names(index, "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00") == [
        "core", "virtio_pci"]
    assert sorted(_names(index, "net-card-7")) == ["nic_a", "nic_b"]
    assert _names(index, "net-card-x") == ["nic_a"]


def test_unmatched_modalias_is_skipped_but_unknown_name_is_an_error(
        index: ModuleIndex) -> None:
    assert _names(index, "pci:v00008086d00001234sv*", "top") == ["core", "mid", "top"]
    with pytest.raises(ModuleNotFound) as exc:
        resolve_modules(index, ["tpo"])
    msg = str(exc.value)
    assert "'tpo'" in msg and KVER in msg and "top" in msg
    assert isinstance(exc.value, UsageError) and exc.value.exit_code == 2


def test_softdep_pre_post_and_only_first_line(index: ModuleIndex) -> None:
    assert _names(index, "fs-fsx") == ["core", "mid", "pre1", "fsx", "post1"]
    assert "ignored" not in _names(index, "fsx")


def test_softdep_cycle_terminates(index: ModuleIndex) -> None:
    # cyc_a pre: cyc_b; cyc_b pre: cyc_a post: cyc_c; cyc_c hard-depends on cyc_a.
    # Each module is expanded once: the second visit of cyc_a ends the loop.
    assert _names(index, "cyc_a") == ["cyc_b", "cyc_a", "cyc_c"]
    assert _names(index, "cyc_b") == ["cyc_a", "cyc_b", "cyc_c"]
    assert _names(index, "cyc_c") == ["cyc_a", "cyc_b", "cyc_c"]


def test_builtin_modules_are_known_not_installed(index: ModuleIndex) -> None:
    closure = resolve_modules(index, ["bi", "fs-ext9", "top"])
    assert closure.builtin == ("bi", "ext9")
    assert [m.name for m in closure.modules] == ["core", "mid", "top"]
    assert _names(index, "uses_builtin") == ["uses_builtin"]


def test_omit_drops_modules_everywhere(index: ModuleIndex) -> None:
    assert _names(index, "fsx", omit=("post1", "pre1")) == ["core", "mid", "fsx"]
    assert _names(index, "top", "nic_a", omit=("top",)) == ["nic_a"]


def test_kmodule_fields(index: ModuleIndex) -> None:
    (core, vp) = resolve_modules(index, ["virtio_pci"]).modules
    assert vp.relpath == "kernel/drivers/virtio/virtio_pci.ko.xz"
    assert vp.path == index.kmoddir / vp.relpath and vp.path.is_file()
    assert vp.codec is Codec.XZ and core.codec is Codec.NONE
    assert vp.firmware == ("virtio/fw.bin",)
    codecs = {m.name: m.codec for m in resolve_modules(index, ["net-card-1"]).modules}
    assert codecs == {"nic_a": Codec.ZSTD, "nic_b": Codec.GZIP}


def test_modprobe_d_alias_softdep_blacklist(tmp_path: Path) -> None:
    kmoddir = _make_tree(tmp_path, index=True)
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "a.conf").write_text(
        "# comment\nsoftdep fsx pre: nic-a\nalias my-disk top\nblacklist nic_b\n"
        "softdep top \\\n  post: pre1\n")
    idx = ModuleIndex.load(kmoddir, KVER, [conf])
    assert _names(idx, "fsx") == ["core", "mid", "nic_a", "fsx"]
    assert _names(idx, "my-disk") == ["core", "mid", "top", "pre1"]
    assert _names(idx, "net-card-1") == ["nic_a"]   # blacklist applies to aliases
    assert _names(idx, "nic_b") == ["nic_b"]        # ... not to module names


def _age(kmoddir: Path, seconds: int = 10) -> None:
    """Every file and directory of the tree `seconds` older, as if depmod ran long ago."""
    for path in [kmoddir, *kmoddir.rglob("*")]:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns - seconds * 10**9, st.st_mtime_ns - seconds * 10**9))


def test_stale_index_falls_back_to_modinfo(tmp_path: Path) -> None:
    kmoddir = _make_tree(tmp_path, index=True)
    write_module(kmoddir, "kernel/extra/new.ko", {"depends": "core"})
    idx = ModuleIndex.load(kmoddir, KVER)
    assert idx.source == "modinfo"
    assert _names(idx, "new") == ["core", "new"]
    assert idx.dirs[0][0] == str(kmoddir) and len(idx.dirs) > 1  # every directory walked
    idx2 = ModuleIndex.load(kmoddir, KVER, use_index=True)
    assert idx2.source == "modinfo"
    (kmoddir / "kernel/extra/new.ko").unlink()  # removed again: its directory changed
    assert ModuleIndex.load(kmoddir, KVER).source == "modinfo"


@pytest.mark.parametrize("change", ["add", "remove", "replace by rename", "new top folder",
                                    "top-level module", "folder removed"])
def test_index_not_current_after_a_change_below_it(tmp_path: Path, change: str) -> None:
    """What makes depmod's index stale is seen through the directories (kmod/index.py)."""
    kmoddir = _make_tree(tmp_path, index=True)
    _age(kmoddir)
    current = ModuleIndex.load(kmoddir, KVER)
    assert current.source == "index"
    assert str(kmoddir / "kernel/lib") in {d for d, _, _ in current.dirs}
    core = kmoddir / "kernel/lib/core.ko"
    if change == "add":
        write_module(kmoddir, "kernel/lib/more.ko", {"depends": ""})
    elif change == "remove":
        core.unlink()
    elif change == "replace by rename":   # as dpkg and install(1) do
        tmp = core.with_name("core.ko.dpkg-new")
        tmp.write_bytes(core.read_bytes())
        tmp.rename(core)
    elif change == "new top folder":
        write_module(kmoddir, "updates/dkms/new.ko", {"depends": ""})
    elif change == "top-level module":
        write_module(kmoddir, "loose.ko", {"depends": ""})
    else:
        shutil.rmtree(kmoddir / "kernel/lib")
    assert ModuleIndex.load(kmoddir, KVER).source == "modinfo"


def test_index_current_despite_a_module_rewritten_in_place(tmp_path: Path) -> None:
    """The known limit of the directory proof, shared with modprobe (which reads the same
    index): a module file written over in place, without depmod, is not noticed."""
    kmoddir = _make_tree(tmp_path, index=True)
    _age(kmoddir)
    core = kmoddir / "kernel/lib/core.ko"
    core.write_bytes(core.read_bytes())
    assert core.stat().st_mtime_ns > (kmoddir / "modules.dep").stat().st_mtime_ns
    assert ModuleIndex.load(kmoddir, KVER).source == "index"


def test_missing_module_dir_names_kver_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ModuleDirMissing) as exc:
        find_kmoddir(Host(tmp_path), "9.9.9")
    msg = str(exc.value)
    assert "9.9.9" in msg and f"{tmp_path}/lib/modules/9.9.9" in msg
    assert f"{tmp_path}/usr/lib/modules/9.9.9" in msg
    with pytest.raises(ModuleDirMissing):
        ModuleIndex.load(tmp_path / "nope", "9.9.9")
    kmoddir = _make_tree(tmp_path / "usr", index=False)
    assert find_kmoddir(Host(tmp_path), KVER) == kmoddir


@pytest.mark.skipif(not shutil.which("depmod") or not shutil.which("modprobe"),
                    reason="kmod not installed")
def test_softdep_cycle_and_first_line_match_real_modprobe(tmp_path: Path) -> None:
    """depmod computes hard deps from symbols, which fake modules lack; the modules
    without `depends=` show what kmod does with aliases and softdeps."""
    kmoddir = tmp_path / "lib" / "modules" / KVER
    for name in ("cyc_a", "cyc_b", "cyc_c", "pre1", "post1", "ignored", "nic_a", "nic_b"):
        rel, info = TREE[name]
        rel = rel.replace(".ko.gz", ".ko")  # kmod may be built without zlib (it is here)
        assert isinstance(info, Mapping)
        write_module(kmoddir, rel, {k: v for k, v in info.items() if k != "depends"})
    write_module(kmoddir, "kernel/fs/fsx.ko",
                 {"alias": "fs-fsx", "softdep": ["pre: pre1 post: post1", "pre: ignored"]})
    subprocess.run(["depmod", "-b", str(tmp_path), KVER], check=True, capture_output=True)
    empty = tmp_path / "conf"
    empty.mkdir()
    idx = ModuleIndex.load(kmoddir, KVER)
    for name in ("cyc_a", "cyc_b", "cyc_c", "fs-fsx", "net-card-3", "net_card_z"):
        out = subprocess.run(["modprobe", "-d", str(tmp_path), "-S", KVER, "-C", str(empty),
                              "--show-depends", name], capture_output=True, text=True,
                             check=True).stdout
        want = list(dict.fromkeys(Path(line.split()[1]).name for line in out.splitlines()))
        got = [m.path.name for m in resolve_modules(idx, [name]).modules]
        assert got == want, name


def test_updates_shadow_a_module_with_and_without_index(tmp_path: Path) -> None:
    kmoddir = _make_tree(tmp_path, index=False)
    write_module(kmoddir, "updates/dkms/mid.ko.xz", {"depends": "core"})
    scanned = ModuleIndex.load(kmoddir, KVER)
    assert scanned.source == "modinfo"
    assert scanned.modules["mid"] == "updates/dkms/mid.ko.xz"
    # depmod lists only the winning copy; the shadowed one must not make it look stale.
    lines = [f"{rel}:" for name, rel in scanned.modules.items()]
    (kmoddir / "modules.dep").write_text("\n".join(lines) + "\n")
    (kmoddir / "modules.alias").write_text("")
    idx = ModuleIndex.load(kmoddir, KVER)
    assert idx.source == "index"
    assert idx.modules["mid"] == "updates/dkms/mid.ko.xz"


def test_absolute_paths_in_old_modules_dep(tmp_path: Path) -> None:
    kmoddir = _make_tree(tmp_path, index=True)
    dep = kmoddir / "modules.dep"
    prefix = f"/lib/modules/{KVER}/"
    dep.write_text("".join(
        prefix + line.replace(" ", " " + prefix) + "\n"
        for line in dep.read_text().splitlines()))
    idx = ModuleIndex.load(kmoddir, KVER)
    assert idx.source == "index"
    assert _names(idx, "top") == ["core", "mid", "top"]
    assert resolve_modules(idx, ["top"]).modules[0].relpath == "kernel/lib/core.ko"


def test_omitting_a_hard_dependency_is_an_error_naming_both(index: ModuleIndex) -> None:
    from mkkdumprd.kmod.closure import OmittedDependency

    with pytest.raises(OmittedDependency, match="top needs mid") as exc:
        _names(index, "top", omit=("mid",))
    assert exc.value.broken == [("top", "mid")]
    with pytest.raises(OmittedDependency, match=r"mid needs core.*top needs core|"
                                                r"top needs core"):
        _names(index, "top", omit=("core",))
    # softdeps are optional: leaving them out is fine; so is omitting the module itself
    assert _names(index, "fsx", omit=("pre1",)) == ["core", "mid", "fsx", "post1"]
    assert _names(index, "top", omit=("top",)) == []

