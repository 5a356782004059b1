"""`crashkernel apply` writes a set of crashkernel= words that the kernel reads exactly.

The kernel finds "crashkernel=" anywhere in the command line, inside other words too, and
takes the last occurrence of each form (kernel/crash_reserve.c get_last_crashkernel). So
the round trip is: what `recommend` intended, written by `apply`, read back by `parse`
(the kernel's own rules) from the resulting line, must be the same reservation.
data/grub2-common-2.06-13+deb12u2.default-grub is Debian's shipped /etc/default/grub
(grub2-common 2.06-13+deb12u2: /usr/share/grub/default/grub), byte for byte.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.crashkernel import apply as ck
from mkkdumprd.crashkernel.grammar import GrammarError, check_set
from mkkdumprd.crashkernel.parse import chosen_words, parse_crashkernel
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host

M, G = 1 << 20, 1 << 30
DATA = Path(__file__).with_name("data")
DEBIAN_GRUB = DATA / "grub2-common-2.06-13+deb12u2.default-grub"
SETS = [("96M",), ("96M", "256M,cma"), ("512M,high", "72M,low"),
        ("68M,high", "72M,low", "64M,cma")]


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def _parse(cmdline: str, mem: str = "8G") -> dict[str, object]:
    code, out, err = _cli("crashkernel", "parse", "--arch", "x86_64", "--mem", mem, "--json",
                          cmdline)
    assert code == 0, err
    data: dict[str, object] = json.loads(out)
    return data


def test_chosen_words_follow_strstr_and_the_last_occurrence() -> None:
    line = "crashkernel=128M ro crcrashkernel=200M foo.crashkernel=1G,cma"
    assert chosen_words(line) == {None: "crashkernel=200M", ",cma": "crashkernel=1G,cma"}


@pytest.mark.parametrize("values", SETS)
def test_kernel_cmdline_round_trip_with_crcrashkernel(tmp_path: Path,
                                                      values: tuple[str, ...]) -> None:
    """The bug this fixes: the set used to go where the first word was, so a later
    `crcrashkernel=200M` (read by the kernel as crashkernel=200M) won."""
    p = tmp_path / "etc/kernel/cmdline"
    p.parent.mkdir(parents=True)
    before = "root=UUID=1 crashkernel=128M ro\tquiet crcrashkernel=200M  splash\n"
    p.write_text(before)
    if values[0].endswith(",high"):
        # a plain occurrence anywhere hides ,high: no placement can help, apply refuses
        with pytest.raises(OperationError, match="hide crashkernel=,high"):
            ck.plan_apply(Host(tmp_path), values, force=True)
        return
    code, _, err = _cli("crashkernel", "apply", "--root", str(tmp_path), "--force",
                        *[a for v in values for a in ("--value", v)])
    assert code == 0, err
    after = p.read_text()
    # every other byte stays: only the old crashkernel= word left, the set went last
    assert after == ("root=UUID=1 ro\tquiet crcrashkernel=200M  splash "
                     + " ".join(f"crashkernel={v}" for v in values) + "\n")
    want = parse_crashkernel(" ".join(f"crashkernel={v}" for v in values), 8 * G,
                             load_arch("x86_64")).as_json()
    assert _parse(" ".join(after.split())) == want


@pytest.mark.parametrize("values", SETS)
def test_set_replaces_every_word_in_place(tmp_path: Path, values: tuple[str, ...]) -> None:
    p = tmp_path / "etc/kernel/cmdline"
    p.parent.mkdir(parents=True)
    p.write_text("root=/dev/vda1 crashkernel=1G,cma ro crashkernel=128M quiet "
                 "crashkernel=64M,low\n")
    (tmp_path / "var/lib/mkkdumprd").mkdir(parents=True)
    # the words were ours: no --force needed
    (tmp_path / "var/lib/mkkdumprd/crashkernel-applied").write_text("128M 1G,cma 64M,low\n")
    plan = ck.plan_apply(Host(tmp_path), values)
    ck.perform(plan, Host(tmp_path))
    after = p.read_text()
    assert after == ("root=/dev/vda1 " + " ".join(f"crashkernel={v}" for v in values)
                     + " ro quiet\n")
    got = chosen_words(after.strip())
    assert sorted(got.values()) == sorted(f"crashkernel={v}" for v in values)


def test_debian_grub_defaults_round_trip(tmp_path: Path) -> None:
    grub = tmp_path / "etc/default/grub"
    grub.parent.mkdir(parents=True)
    original = DEBIAN_GRUB.read_bytes()
    grub.write_bytes(original)
    values = ("68M", "64M,cma")
    code, _, err = _cli("crashkernel", "apply", "--root", str(tmp_path),
                        "--value", "68M 64M,cma")
    assert code == 0, err
    assert grub.read_bytes() == original            # Debian's file: not one byte changed
    script = ('GRUB_DISTRIBUTOR=x; lsb_release() { :; }; . "$1/etc/default/grub"; '
              'for f in "$1"/etc/default/grub.d/*.cfg; do . "$f"; done; '
              'echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"')
    line = subprocess.run(["sh", "-c", script, "sh", str(tmp_path)], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert line == "quiet crashkernel=68M crashkernel=64M,cma"
    assert _parse(line, "4G") == {"size": 68 * M, "offset": None, "high": None, "low": None,
                                  "cma": 64 * M}
    assert ck.applied_record(Host(tmp_path)) == (values, False)


def test_grub_d_refuses_a_later_file_that_would_win(tmp_path: Path) -> None:
    (tmp_path / "etc/default/grub.d").mkdir(parents=True)
    (tmp_path / "etc/default/grub").write_bytes(DEBIAN_GRUB.read_bytes())
    (tmp_path / "etc/default/grub.d/zz-site.cfg").write_text(
        'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT x.crashkernel=1G"\n')
    with pytest.raises(OperationError, match=r"x\.crashkernel=1G"):
        ck.plan_apply(Host(tmp_path), ("96M",))


@pytest.mark.parametrize(("values", "why"), [
    (("96M", "128M"), "one value per form"),
    (("96M", "512M,high"), "ignores ,high"),
    (("72M,low",), "only read beside"),
    (("1G,cma",), "alone reserves nothing"),
])
def test_sets_the_kernel_would_misread_are_refused(values: tuple[str, ...], why: str) -> None:
    with pytest.raises(GrammarError, match=why):
        check_set(values)


def test_recommend_apply_parse_round_trip(tmp_path: Path) -> None:
    """What recommend intends, applied, parsed back as the kernel would: the same."""
    from mkkdumprd.crashkernel import recommend as rec
    from mkkdumprd.crashkernel.layout import choose

    arch = load_arch("x86_64")
    inp = rec.EstimateInputs(arch=arch, ram=4 * G, kernel_runtime=63 * M,
                             kernel_source="t", image_compressed=3 * M,
                             image_unpacked=6 * M, image_entries=80, image_source="t",
                             modules=0, module_count=0, cpus=1)
    est = rec.estimate(inp)
    for use_cma, ram, below in ((True, 4 * G, 3 * G), (False, 4 * G, 3 * G),
                                (True, 6 * G, 3 * G), (False, 64 * G, 2 * G)):
        lay = choose(arch, est.total, est.rounded, rec.fixed_need(inp), ram, below,
                     use_cma, "test")
        p = tmp_path / f"{ram}-{use_cma}" / "etc/kernel/cmdline"
        p.parent.mkdir(parents=True)
        p.write_text("root=/dev/vda1 crcrashkernel=200M ro\n" if not lay.low else
                     "root=/dev/vda1 ro\n")
        host = Host(p.parents[2])
        ck.perform(ck.plan_apply(host, lay.words), host)
        got = _parse(" ".join(p.read_text().split()), f"{ram >> 30}G")
        assert got["cma"] == (lay.cma or None)
        if lay.low:
            assert (got["high"], got["low"]) == (lay.fixed, lay.low)
        else:
            assert (got["size"], got["high"]) == (lay.fixed, None)


def _auto_root(tmp_path: Path, line: str, record: str | None) -> Path:
    for rel, text in {"etc/kernel/cmdline": line,
                      "proc/meminfo": "MemTotal:        4194304 kB\n",
                      "proc/sys/kernel/osrelease": "6.1.0-99-amd64\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    if record is not None:
        (tmp_path / "var/lib/mkkdumprd").mkdir(parents=True)
        (tmp_path / "var/lib/mkkdumprd/crashkernel-applied").write_text(record)
    return tmp_path


@pytest.mark.parametrize(("record", "changes"), [
    ("96M\nrecommended\n", True),        # our recommendation: replaced
    ("96M\n", False),                    # written by hand with --value: the admin's
    (None, False),                       # nothing recorded: the admin's
])
def test_auto_reset_replaces_only_our_recommendation(tmp_path: Path, record: str | None,
                                                     changes: bool) -> None:
    root = _auto_root(tmp_path, "root=/dev/vda1 crashkernel=96M ro\n", record)
    code, out, err = _cli("crashkernel", "apply", "--auto", "--kver", "6.1.0-100-amd64",
                          "--root", str(root))
    assert code == 0, err
    after = (root / "etc/kernel/cmdline").read_text()
    if changes:
        assert "crashkernel=96M" not in after and after.count("crashkernel=") == 1
        values, recommended = ck.applied_record(Host(root))
        assert recommended and f"crashkernel={values[0]}" in after
    else:
        assert after == "root=/dev/vda1 crashkernel=96M ro\n"
        assert "not a value mkkdumprd recommended" in out


def test_auto_reset_no_in_kdump_conf(tmp_path: Path) -> None:
    root = _auto_root(tmp_path, "root=/dev/vda1 crashkernel=96M ro\n", "96M\nrecommended\n")
    (root / "etc/kdump.conf").write_text("auto_reset_crashkernel no\n")
    code, out, _ = _cli("crashkernel", "apply", "--auto", "--root", str(root))
    assert code == 0 and "auto_reset_crashkernel is no" in out
    assert (root / "etc/kernel/cmdline").read_text() == "root=/dev/vda1 crashkernel=96M ro\n"
