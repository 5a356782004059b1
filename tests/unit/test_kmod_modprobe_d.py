"""modprobe.d reading as kmod does it: file order across directories, hiding, parsing."""

from __future__ import annotations

from pathlib import Path

from mkkdumprd.kmod.modprobe_d import (
    SoftDep,
    config_files,
    load_modprobe_d,
    parse_modprobe_text,
    parse_softdep,
)


def test_files_sorted_by_name_earlier_dir_hides_later(tmp_path: Path) -> None:
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    (etc / "b.conf").write_text("alias x etc_b\n")
    (lib / "b.conf").write_text("alias x lib_b\n")
    (lib / "a.conf").write_text("alias x lib_a\n")
    (lib / "c.txt").write_text("alias x ignored\n")
    assert config_files([etc, lib, tmp_path / "missing"]) == [lib / "a.conf", etc / "b.conf"]
    conf = load_modprobe_d([etc, lib])
    assert conf.aliases == (("x", "lib_a"), ("x", "etc_b"))


def test_parse_directives() -> None:
    conf = parse_modprobe_text(
        "# c\n  options foo bar=1\nalias net-pf-10 ipv6\nblacklist pcspkr\n"
        "softdep uhci-hcd pre: ehci-hcd \\\n post: a-b\ninstall x /bin/true\n")
    assert conf.aliases == (("net_pf_10", "ipv6"),)
    assert conf.blacklist == frozenset({"pcspkr"})
    assert conf.softdeps == (SoftDep("uhci_hcd", ("ehci-hcd",), ("a-b",)),)


def test_softdep_words_before_pre_or_post_are_dropped() -> None:
    # depmod writes MODULE_SOFTDEP("gcm") as `softdep cifs gcm`: kmod ignores it.
    assert parse_softdep("cifs", "gcm") == SoftDep("cifs", (), ())
    assert parse_softdep("m", "x pre: a b post: c pre: d") == SoftDep("m", ("a", "b", "d"),
                                                                     ("c",))
