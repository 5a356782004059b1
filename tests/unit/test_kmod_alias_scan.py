"""modules.alias answered by a scan before it is parsed (kmod/index.py _FileAliases._scan)
gives exactly what the parsed table gives: module names, softdep names, modaliases of a
real Debian kernel, and a file with kmod's awkward cases (`-`/`_`, brackets, backslashes,
leading globs, exact patterns); text the scan would read differently is left to the parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.host import Host
from mkkdumprd.kmod.index import _FileAliases
from tests.support.debian_kernel import Kernel

AWKWARD = """\
# comment
alias crc32c crc32c_generic
alias crc32c crc32c-intel
alias crypto-crc32c crc32c-generic
alias crc* crcany
alias cr?32c crcq
alias c[q-s]c32c crcbracket
alias crc3\\2c crcbackslash
alias *c32c starglob
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
alias fs-ext4 ext4
alias fs_ext4 ext4
alias crc32c-x crcdash
alias crc32c_x crcunderscore
alias short
alias
alias devname:foo-bar foo_bar_mod
"""

KEYS = ("crc32c", "crypto_crc32c", "crcx", "cro32c", "crr32c", "crc32c_x", "fs_ext4",
        "virtio:d00000001v00001af4", "virtio:d00000002v00001AF4",
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "c", "", "zzz",
        "devname:foo_bar", "crc32", "crc32c_", "x32c")


def _both(path: Path, key: str) -> tuple[list[str] | None, list[str]]:
    quick = _FileAliases(Host.this_machine(), path)
    parsed = _FileAliases(Host.this_machine(), path)
    parsed._fill()
    return quick._scan(path, key), parsed.match(key)


@pytest.mark.parametrize("key", KEYS)
def test_scan_equals_the_parsed_table(tmp_path: Path, key: str) -> None:
    f = tmp_path / "modules.alias"
    f.write_text(AWKWARD)
    scanned, parsed = _both(f, key)
    assert scanned == parsed


@pytest.mark.parametrize("text", [AWKWARD.replace("alias crc* ", "alias\tcrc* "),
                                  AWKWARD.replace("alias crc* ", "alias  crc* "),
                                  AWKWARD.replace("\n", "\r\n"),
                                  AWKWARD + "alias crc32c caf\u00e9\n",
                                  AWKWARD.replace("crcq", "crcq\x1fextra")])
def test_text_read_differently_is_left_to_the_parse(tmp_path: Path, text: str) -> None:
    f = tmp_path / "modules.alias"
    f.write_text(text)
    scanned, _ = _both(f, "crc32c")
    assert scanned is None


def test_only_a_few_short_queries_are_scanned(tmp_path: Path) -> None:
    f = tmp_path / "modules.alias"
    f.write_text(AWKWARD)
    table = _FileAliases(Host.this_machine(), f)
    assert table.match("crc32c") == ["crc32c_generic", "crc32c_intel", "crcany", "crcq",
                                     "crcbracket", "crcbackslash", "starglob"]
    assert not table.parsed
    long_key = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
    assert table.match(long_key) == ["virtio_pci"]
    assert table.parsed  # a long modalias: the file is parsed whole


def test_real_kernel_aliases(kernel: Kernel) -> None:
    path = kernel.kmoddir / "modules.alias"
    text = path.read_text()
    keys = {"crc32c", "crypto_crc32c", "fs_ext4", "net_pf_10", "fs_vfat", "aes", "sha256",
            "block_major_8", "char_major_10_229", "devname:fuse", "nls_utf8", "iso9660",
            "virtio:d00000001v00001af4", "virtio:d00000002v00001af4", "crc32", "lzo"}
    for line in text.splitlines()[::500]:  # a spread of real patterns, as literal keys
        words = line.split()
        if len(words) >= 3 and len(words[1]) <= 40:
            keys.add(words[1].replace("-", "_").replace("*", "x").replace("?", "y"))
    parsed = _FileAliases(Host.this_machine(), path)
    parsed._fill()
    for key in sorted(keys):
        got = _FileAliases(Host.this_machine(), path)._scan(path, key)
        assert got == parsed.match(key), key
