"""The capture kernel's command line: arch remove/append lists applied to /proc/cmdline."""

from __future__ import annotations

import pytest

from mkkdumprd.arch import ARCHES, load_arch
from mkkdumprd.loader.cmdline import capture_cmdline, split_words

FEDORA = ("BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.8.5 root=UUID=1234 ro rootflags=subvol=root "
          "crashkernel=1G-4G:192M,4G-64G:256M rhgb quiet console=ttyS0,115200 "
          "resume=/dev/vda3 nr_cpus=8 hugepages=64 rd.lvm.lv=fedora/root "
          "dyndbg=\"file foo.c +p\" systemd.unit=multi-user.target")


def test_split_words_keeps_quoted_spaces() -> None:
    assert split_words(' a  b="c d" e\t"f g"=h  ') == ["a", 'b="c d"', "e", '"f g"=h']


def test_x86_64_capture_cmdline() -> None:
    a = load_arch("x86_64")
    line = capture_cmdline(FEDORA, a.cmdline_remove, a.cmdline_append)
    got = split_words(line)
    # kept: console, unrelated options, quoted values intact
    assert "console=ttyS0,115200" in got
    assert 'dyndbg="file foo.c +p"' in got
    assert "systemd.unit=multi-user.target" in got and "rhgb" in got
    # removed by name
    for gone in ("BOOT_IMAGE", "root", "rootflags", "crashkernel", "quiet", "resume",
                 "hugepages", "rd.lvm.lv"):
        assert not any(w.split("=")[0] == gone for w in got), gone
    # the host's nr_cpus=8 is replaced by ours, not duplicated
    assert [w for w in got if w.startswith("nr_cpus=")] == ["nr_cpus=1"]
    # the arch list is appended, in order, at the end
    assert got[-len(a.cmdline_append):] == list(a.cmdline_append)


def test_init_arguments_after_double_dash_are_dropped() -> None:
    a = load_arch("x86_64")
    got = capture_cmdline("console=ttyS0 rdinit=/process_api -- --firecracker-init --addr x",
                          a.cmdline_remove, ())
    assert got == "console=ttyS0"


def test_elfcorehdr_is_never_passed() -> None:
    got = capture_cmdline("elfcorehdr=0x1000 console=hvc0", (), (),
                          extra=["elfcorehdr=0x2000", "crashkernel=64M", "x=1"])
    assert got == "console=hvc0 x=1"


def test_extra_words_win_over_the_arch_list_and_dashes_equal_underscores() -> None:
    got = capture_cmdline("acpi-no-memhotplug a=1", (), ("nr_cpus=1", "acpi_no_memhotplug"),
                          extra=["nr_cpus=2"])
    assert got == "a=1 acpi_no_memhotplug nr_cpus=2"


def test_empty_values_are_dropped() -> None:
    assert capture_cmdline("a= b=1 c", (), ()) == "b=1 c"


@pytest.mark.parametrize("arch", ARCHES)
def test_every_arch_limits_cpus_and_drops_crashkernel(arch: str) -> None:
    a = load_arch(arch)
    got = capture_cmdline("console=ttyX crashkernel=256M", a.cmdline_remove, a.cmdline_append)
    assert "crashkernel" not in got and "elfcorehdr" not in got
    assert "nr_cpus=1" in got.split() or "maxcpus=1" in got.split()
    assert got.startswith("console=ttyX ")


def test_memmap_keeps_only_reserved_ranges_and_ramoops_words_pass() -> None:
    """`pstore setup --apply`'s region reaches the capture kernel: its memmap=SIZE$ADDR (kept
    out of RAM there too) and ramoops.* words (the capture image loads ramoops with them);
    memmap= items that give or take RAM describe the first kernel's memory and are dropped."""
    from mkkdumprd.records.setup import RECORD_SIZE

    a = load_arch("x86_64")
    ramoops = ["memmap=1M$0x8000000", "ramoops.mem_address=0x8000000",
               "ramoops.mem_size=0x100000", f"ramoops.record_size={RECORD_SIZE}",
               f"ramoops.pmsg_size={RECORD_SIZE}", "ramoops.max_reason=1"]
    running = ("root=/dev/vda1 memmap=4G!12G memmap=exactmap memmap=640K@0 memmap=2G "
               "memmap=64M$0x20000000,1G@4G,16M#0x30000000 " + " ".join(ramoops))
    got = split_words(capture_cmdline(running, a.cmdline_remove, a.cmdline_append))
    assert [w for w in got if w.startswith("memmap=")] == ["memmap=64M$0x20000000",
                                                           "memmap=1M$0x8000000"]
    assert [w for w in got if w.startswith("ramoops.")] == ramoops[1:]
