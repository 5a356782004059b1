"""Parity with kmod on a real Debian kernel: for every module name, every exact alias and
a sample of modalias globs, the .ko files we resolve are the ones
`modprobe -d ROOT -S KVER --show-depends NAME` lists (softdeps included, built-ins not),
from depmod's index, from `.modinfo` alone, on xz and zstd trees, and with modprobe.d.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from mkkdumprd.kmod.closure import resolve_modules
from mkkdumprd.kmod.index import ModuleIndex
from mkkdumprd.kmod.names import modname_from_path, strip_compression
from tests.support.debian_kernel import Kernel
from tests.support.kmod_trees import compressed, modprobe_show_depends, without_index

pytestmark = pytest.mark.slow

GLOB_SAMPLE = 1500
SYMBOL_SAMPLE = 400
# Found by nothing: kmod says "not found", we must too (lookup empty / ModuleNotFound).
MISSING = ["no_such_module", "fs-nosuchfs", "symbol:no_such_symbol",
           "pci:vFFFFFFFFdFFFFFFFFsvsdbcFFscFFiFF", "char-major-999-1"]




def _concrete(pattern: str) -> str:
    """A string the glob pattern matches: `*` empty, `?` a digit, a set its first char."""
    s = re.sub(r"\[!?(.)[^]]*\]", lambda m: m.group(1), pattern)
    return s.replace("*", "").replace("?", "0")


@pytest.fixture(scope="module")
def names(kernel: Kernel) -> list[str]:
    mods = [modname_from_path(line.split(":", 1)[0]) for line in
            (kernel.kmoddir / "modules.dep").read_text().splitlines()]
    aliases = [line.split()[1] for line in (kernel.kmoddir / "modules.alias").read_text()
               .splitlines() if line.startswith("alias ")]
    exact = sorted({a for a in aliases if not re.search(r"[*?\[]", a)})
    globs = sorted({a for a in aliases if re.search(r"[*?\[]", a)})
    step = max(1, len(globs) // GLOB_SAMPLE)
    sample = sorted({_concrete(g) for g in globs[::step]})
    symbols = [line.split()[1] for line in (kernel.kmoddir / "modules.symbols").read_text()
               .splitlines() if line.startswith("alias symbol:")]
    symbols = symbols[:: max(1, len(symbols) // SYMBOL_SAMPLE)]
    builtin = [modname_from_path(line) for line in
               (kernel.kmoddir / "modules.builtin").read_text().splitlines() if line]
    builtin_aliases = [rec.split("=", 1)[1] for rec in
                       (kernel.kmoddir / "modules.builtin.modinfo").read_bytes()
                       .decode(errors="replace").split("\0") if ".alias=" in rec]
    return list(dict.fromkeys([*mods, *exact, *sample, *symbols, *builtin,
                               *[_concrete(a) for a in builtin_aliases], *MISSING]))


@pytest.fixture(scope="module")
def empty_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("modprobe.d-empty")


def _ours(index: ModuleIndex, names: Sequence[str]) -> dict[str, list[str] | None]:
    out: dict[str, list[str] | None] = {}
    for name in names:
        if not index.lookup(name):
            out[name] = None
            continue
        out[name] = [m.relpath for m in resolve_modules(index, [name]).modules]
    return out


def _compare(ours: dict[str, list[str] | None],
             oracle: dict[str, list[str] | None]) -> list[str]:
    bad: list[str] = []
    for name, want in oracle.items():
        got = ours[name]
        want_set = None if want is None else {strip_compression(p) for p in want}
        got_set = None if got is None else {strip_compression(p) for p in got}
        if got_set != want_set:
            bad.append(f"{name}: kmod {sorted(want_set or [])} ours {sorted(got_set or [])}")
    return bad


def _check(index: ModuleIndex, names: list[str], oracle: dict[str, list[str] | None]) -> None:
    ours = _ours(index, names)
    bad = _compare(ours, oracle)
    found = sum(v is not None for v in oracle.values())
    print(f"\n{index.source} {index.kmoddir}: {len(names)} names ({found} found by kmod), "
          f"{len(names) - len(bad)} identical, {len(bad)} different")
    assert not bad, "\n".join(bad[:30])
    assert all(oracle[m] is None for m in MISSING if m in oracle)
    _check_order(index, ours)


def _check_order(index: ModuleIndex, ours: dict[str, list[str] | None]) -> None:
    """Every module comes after all of its hard dependencies."""
    for name, paths in ours.items():
        if not paths:
            continue
        pos = {modname_from_path(p): i for i, p in enumerate(paths)}
        for mod, i in pos.items():
            for dep in index.deps.get(mod, ()):
                if dep in pos:
                    assert pos[dep] < i, f"{name}: {mod} loads before its dependency {dep}"


def test_index_matches_modprobe(kernel: Kernel, names: list[str], empty_conf: Path) -> None:
    oracle = modprobe_show_depends(kernel, names, empty_conf, "plain")
    index = ModuleIndex.load(kernel.kmoddir, kernel.kver)
    assert index.source == "index"
    _check(index, names, oracle)


def test_modinfo_scan_matches_modprobe(kernel: Kernel, names: list[str],
                                       empty_conf: Path) -> None:
    oracle = modprobe_show_depends(kernel, names, empty_conf, "plain")
    bare = without_index(kernel)
    assert not (bare.kmoddir / "modules.dep").exists()
    index = ModuleIndex.load(bare.kmoddir, bare.kver)
    assert index.source == "modinfo"
    _check(index, names, oracle)


@pytest.mark.parametrize("codec", ["xz", "zst"])
def test_compressed_tree_matches_modprobe(kernel: Kernel, names: list[str], empty_conf: Path,
                                          codec: str) -> None:
    tree = compressed(kernel, codec)
    oracle = modprobe_show_depends(tree, names, empty_conf, codec)
    assert all(p.endswith(f".ko.{codec}") for v in oracle.values() for p in v or [])
    for use_index in (True, False):
        index = ModuleIndex.load(tree.kmoddir, tree.kver, use_index=use_index)
        assert index.source == ("index" if use_index else "modinfo")
        _check(index, names, oracle)


EXTRA_CONF = """\
# softdep override: only the first matching softdep line counts, modprobe.d first
softdep ext4 pre: virtio_blk post: xfs
softdep virtio-* pre: dm-mod
softdep dm_mod pre: virtio_blk
alias my-disk virtio_blk
alias my-* nvme
alias fs-xfs btrfs
blacklist e1000e
blacklist floppy
"""


def test_modprobe_d_matches_modprobe(kernel: Kernel, names: list[str],
                                     tmp_path: Path) -> None:
    conf = tmp_path / "modprobe.d"
    conf.mkdir()
    for src in sorted(Path("/lib/modprobe.d").glob("*.conf")):
        shutil.copy(src, conf / src.name)
    (conf / "50-test.conf").write_text(EXTRA_CONF)
    extra = ["my-disk", "my-other", "fs-xfs", "fs-ext4", "virtio_net", "dm_mod"]
    all_names = [*names, *[n for n in extra if n not in names]]
    oracle = modprobe_show_depends(kernel, all_names, conf, "conf")
    index = ModuleIndex.load(kernel.kmoddir, kernel.kver, [conf])
    _check(index, all_names, oracle)
