"""Several dump targets: dump_policy in kdump.conf and on the command line, the build's
per-target planning (union of what each needs, fallback's warnings), the image's layout."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkkdumprd.assemble.builder import BuildRequest, assemble, collector_argv
from mkkdumprd.cli import main
from mkkdumprd.config.kdumpconf import parse_kdump_conf
from mkkdumprd.config.model import DumpPolicy, KdumpConfig, Target, TargetKind
from mkkdumprd.config.render import render_kdump_conf
from mkkdumprd.config.target_spec import apply_targets
from mkkdumprd.errors import MkkdumprdError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.image import layout
from tests.support.debian_kernel import Kernel
from tests.support.fake_machine import UUID, fake_machine

TWO = "ext4 LABEL=dumps\nnfs nas:/export\n"
GONE = "deadbeef-0000-4000-8000-000000000001"
GONE2 = "deadbeef-0000-4000-8000-000000000002"


def _errors(text: str) -> list[str]:
    return [str(e) for e in parse_kdump_conf(text, "k.conf").errors]


# ---- kdump.conf ---------------------------------------------------------------------------

def test_a_second_target_without_a_policy_names_dump_policy() -> None:
    (err,) = _errors(TWO)
    assert err.startswith("k.conf:2: more than one dump target: 'nfs nas:/export' here and "
                          "'ext4 LABEL=dumps' at k.conf:1 (dump_policy is single by default)")
    assert "dump_policy fallback" in err and "dump_policy all" in err
    (err,) = _errors(TWO + "dump_policy single\n")
    assert "(dump_policy is single)" in err


def test_unknown_policy_is_an_error_at_its_line() -> None:
    (err,) = _errors("ext4 LABEL=dumps\ndump_policy sometimes\n")
    assert err == ("k.conf:2: dump_policy 'sometimes' is not valid; use one of: single, "
                   "fallback, all")


def test_fallback_keeps_every_target_with_its_line() -> None:
    result = parse_kdump_conf("dump_policy fallback\n" + TWO + "raw /dev/vdc\n", "k.conf")
    config = result.config
    assert config is not None, result.errors
    assert config.dump_policy is DumpPolicy.FALLBACK
    assert [(t.kind, str(t.where)) for t in config.targets] == [
        (TargetKind.LOCAL, "k.conf:2"), (TargetKind.NFS, "k.conf:3"),
        (TargetKind.RAW, "k.conf:4")]
    # a raw target among them: the default collector has -F (so `config show` writes a line
    # that parses again: test_multi_target_files_never_raise_and_round_trip found it), and
    # the filesystem targets' variant drops it at build time
    assert "-F" in config.core_collector
    fs, stream = collector_argv(config)
    assert "-F" not in fs and "-F" in stream


def test_the_same_target_twice_is_an_error() -> None:
    (err,) = _errors("dump_policy all\next4 LABEL=dumps\next4 LABEL=dumps\n")
    assert err.startswith("k.conf:3: dump target ext4 LABEL=dumps is already listed at k.conf:2")


def test_a_streamed_target_among_others_needs_minus_f() -> None:
    (err,) = _errors("dump_policy all\next4 LABEL=d\nssh root@h\n"
                     "core_collector makedumpfile -l -d 31\n")
    assert "lacks -F, which the ssh target (ssh root@h) needs" in err


def test_single_target_files_record_no_policy() -> None:
    """The JSON record (and the manifest made from it) of a one-target file is as before."""
    from mkkdumprd.config.render import config_as_dict

    config = parse_kdump_conf("ext4 LABEL=d\n").config
    assert config is not None
    data = config_as_dict(config)
    assert "dump_policy" not in data and "dump_policy" not in data["defaults"]
    assert "more_targets" not in data
    config = parse_kdump_conf("dump_policy all\next4 LABEL=d\nnfs h:/e\n").config
    assert config is not None
    data = config_as_dict(config)
    assert data["dump_policy"] == "all" and data["more_targets"][0]["server"] == "h:/e"


def test_show_writes_the_targets_in_order_and_explains_the_policy() -> None:
    config = parse_kdump_conf("nfs nas:/export\ndump_policy fallback\next4 LABEL=dumps\n").config
    assert config is not None
    shown = render_kdump_conf(config)
    assert "nfs nas:/export\next4 LABEL=dumps\ndump_policy fallback  # the 2 targets above " \
           "are tried in this order" in shown
    again = parse_kdump_conf(shown).config
    assert again is not None and again.dump_policy is DumpPolicy.FALLBACK
    assert [t.describe() for t in again.targets] == [t.describe() for t in config.targets]


# hypothesis: files of several target lines, a policy line or none, some noise
TARGET_LINES = st.sampled_from([
    "ext4 LABEL=a", "xfs UUID=01234567-89ab-cdef-0123-456789abcdef", "raw /dev/vdb",
    "nfs srv:/export", "nfs4 [2001:db8::1]:/e", "ssh root@10.0.2.2", "ext4 /dev/vdc1",
    "btrfs LABEL=b c", "ext4", "nfs nohost", "ssh @", "raw UUID=x", "minix /dev/x"])
POLICY_LINES = st.sampled_from(["", "dump_policy single", "dump_policy fallback",
                                "dump_policy all", "dump_policy", "dump_policy any",
                                "dump_policy fallback all", 'dump_policy "all"'])
NOISE = st.sampled_from(["", "# x", "path /var/crash", "core_collector makedumpfile -F -d 31",
                         "failure_action poweroff", "sshkey /k", "keep_dumps 2"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(TARGET_LINES, POLICY_LINES, NOISE), max_size=8),
       st.sampled_from(["\n", "\r\n"]))
def test_multi_target_files_never_raise_and_round_trip(lines: list[str], end: str) -> None:
    result = parse_kdump_conf(end.join(lines), "f.conf")
    assert (result.config is None) == bool(result.errors)
    for diag in (*result.errors, *result.warnings):
        assert diag.where is not None and diag.message and "\n" not in diag.message
    config = result.config
    if config is None:
        return
    if config.more_targets:
        assert config.dump_policy is not DumpPolicy.SINGLE
    again = parse_kdump_conf(render_kdump_conf(config)).config
    assert again is not None
    assert again.dump_policy is config.dump_policy
    assert [replace(t, where=None) for t in again.targets] == \
        [replace(t, where=None) for t in config.targets]


# ---- the command line ---------------------------------------------------------------------

def test_target_repeated_needs_a_policy_and_keeps_the_order() -> None:
    base = KdumpConfig()
    with pytest.raises(UsageError, match="--target is given 2 times but the dump policy is "
                                         "single; add --dump-policy fallback"):
        apply_targets(base, ["local:/dev/vdb:/c", "nfs:h:/e"], None)
    config = apply_targets(base, ["ext4:/dev/vdb:/c", "nfs:h:/e"], "fallback")
    assert [t.describe() for t in config.targets] == ["ext4 /dev/vdb", "nfs h:/e"]
    assert config.path == "/c" and config.dump_policy is DumpPolicy.FALLBACK
    with pytest.raises(UsageError, match="different dump paths"):
        apply_targets(base, ["ext4:/dev/vdb:/c", "nfs:h:/e:/d"], "all")


def test_config_check_explains_order_and_policy(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("dump_policy fallback\n" + TWO)
    r = CliRunner().invoke(main, ["config", "check", "-c", str(conf)])
    assert r.exit_code == 0, r.output
    assert f"dump_policy fallback: 2 targets, tried in this order until one holds a " \
           f"complete vmcore; failure_action runs only when none does:\n" \
           f"  1. ext4 LABEL=dumps ({conf}:2)\n  2. nfs nas:/export ({conf}:3)\n" in r.output
    r = CliRunner().invoke(main, ["config", "check", "-c", str(conf), "--dump-policy",
                                  "single"])
    assert r.exit_code == 2 and "--dump-policy single" in r.output
    r = CliRunner().invoke(main, ["config", "show", "--target", "raw:/dev/vdb", "--target",
                                  "nfs:h:/e", "--dump-policy", "all"])
    assert r.exit_code == 0, r.output
    assert "raw /dev/vdb\nnfs h:/e\ndump_policy all  # each of the 2 targets" in r.output


# ---- the build ----------------------------------------------------------------------------

def _req(kernel: Kernel, config: KdumpConfig, **kw: object) -> BuildRequest:
    args: dict[str, object] = dict(
        config=config, kver=kernel.kver, kmoddir=kernel.kmoddir, sysroot=Host.this_machine(),
        machine=Host.this_machine(), arch="x86_64", hostonly=False,
        add_drivers=("virtio_pci", "virtio_blk"))
    args.update(kw)
    return BuildRequest(**args)  # type: ignore[arg-type]


LOCAL = Target(TargetKind.LOCAL, device="/dev/vda", fstype="ext4")
NFS = Target(TargetKind.NFS, server="10.0.2.100:/export")


def _canonical(path: str) -> str:
    """A further target's script named as the first target's is."""
    return re.sub(r"/(target|network)-\d+\.sh$", r"/\1.sh", path)


def test_a_two_target_image_holds_no_more_than_the_two_single_images(kernel: Kernel) -> None:
    single = [assemble(_req(kernel, KdumpConfig(target=t, path="/var/crash")))
              for t in (LOCAL, NFS)]
    multi = assemble(_req(kernel, KdumpConfig(target=LOCAL, more_targets=(NFS,),
                                              dump_policy=DumpPolicy.FALLBACK,
                                              path="/var/crash")))
    union = {str(e.path) for r in single for e in r.spec}
    paths = {_canonical(str(e.path)) for e in multi.spec}
    assert paths <= union, sorted(paths - union)
    assert set(multi.kernel_modules) == {m for r in single for m in r.kernel_modules}
    scripts = {str(e.path) for e in multi.spec if "/kdump/" in str(e.path)}
    assert {"/usr/lib/kdump/target.sh", "/usr/lib/kdump/target-2.sh",
            "/usr/lib/kdump/network-2.sh"} <= scripts or \
        {layout.TARGET_SH, layout.target_script(1, layout.TARGET_SH),
         layout.target_script(1, layout.NETWORK_SH)} <= scripts, sorted(scripts)


def test_fallback_warns_about_a_target_it_cannot_resolve(kernel: Kernel, tmp_path: Path) -> None:
    system = Host(fake_machine(tmp_path / "m"))
    parsed = parse_kdump_conf(f"dump_policy fallback\next4 UUID={GONE}\next4 UUID={UUID}\n"
                              "path /crash\n", "k.conf").config
    assert parsed is not None
    res = assemble(_req(kernel, parsed, machine=system, hostonly=True, add_drivers=()))
    assert any(w.startswith(f"k.conf:2: target device UUID={GONE} not found on this machine")
               and "the image still tries it at dump time" in w for w in res.warnings), \
        res.warnings
    assert [t.device for t in (res.target, *res.more_targets)] == [f"UUID={GONE}", f"UUID={UUID}"]
    # the drivers of the disk found on the host are in, for both attempts
    assert {"virtio_blk", "ext4"} <= set(res.kernel_modules)

    for policy in ("all", "single"):
        config = replace(parsed, dump_policy=DumpPolicy(policy))
        if policy == "single":
            config = replace(config, more_targets=())
        with pytest.raises(UsageError, match=rf"^k\.conf:2: target device UUID={GONE} not found"):
            assemble(_req(kernel, config, machine=system, hostonly=True, add_drivers=()))


def test_fallback_with_no_target_resolved_is_an_error(kernel: Kernel, tmp_path: Path) -> None:
    system = Host(fake_machine(tmp_path / "m"))
    parsed = parse_kdump_conf(f"dump_policy fallback\next4 UUID={GONE}\next4 UUID={GONE2}\n",
                              "k.conf").config
    assert parsed is not None
    with pytest.raises(MkkdumprdError, match=r"^k\.conf:2: .*no other dump target could be "
                                             r"resolved either"):
        assemble(_req(kernel, parsed, machine=system, hostonly=True, add_drivers=()))


def test_two_ssh_targets_are_refused(kernel: Kernel) -> None:
    parsed = parse_kdump_conf("dump_policy all\nssh a@h1\nssh b@h2\n", "k.conf").config
    assert parsed is not None
    with pytest.raises(UsageError, match=r"^k\.conf:3: a second ssh target"):
        assemble(_req(kernel, parsed))
