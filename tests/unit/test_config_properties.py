"""Property tests: no input makes the parser raise, and what mkkdumprd writes in kdump.conf
syntax (`config show`, the image's /etc/kdump.conf) parses back to the same settings."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import replace

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mkkdumprd.config.directives import SETTINGS as SETTINGS_ROWS
from mkkdumprd.config.kdumpconf import KNOWN, parse_kdump_conf, parse_kdump_conf_bytes
from mkkdumprd.config.model import KdumpConfig, Target, TargetKind
from mkkdumprd.config.render import capture_conf, render_kdump_conf
from mkkdumprd.config.target_spec import apply_target, parse_target_spec
from mkkdumprd.errors import MkkdumprdError

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# What a value may hold: anything but '#' (a comment) and control characters, plus tabs.
VALUE_CHARS = st.one_of(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="#"),
    st.sampled_from("\t \"'`$();&|\\*"),
)
value_text = st.text(VALUE_CHARS, min_size=1, max_size=20)
module = st.from_regex(r"[a-z0-9_][a-z0-9_-]{0,12}", fullmatch=True)
uuid = st.uuids().map(str)


def directive_line(directive: str) -> st.SearchStrategy[str]:
    """A valid value for `directive`, written the way a human might."""
    # Blanks at the end only survive when quoted: the case where show must quote.
    absolute = st.tuples(value_text, st.sampled_from(["", " ", "\t ", '"'])).map(
        lambda t: "/" + t[0] + t[1])
    words = st.lists(value_text, min_size=1, max_size=5)
    options: dict[str, st.SearchStrategy[str]] = {
        "path": absolute,
        "sshkey": absolute,
        "kdump_pre": absolute,
        "kdump_post": absolute,
        "core_collector": st.tuples(st.sampled_from(["makedumpfile", "cp", "/bin/dd"]),
                                    words).map(lambda t: shlex.join([t[0], "-F", *t[1]])),
        "extra_bins": st.lists(st.one_of(module, absolute), min_size=1, max_size=4)
        .map(shlex.join),
        "extra_modules": st.lists(module, min_size=1, max_size=4).map(" ".join),
        "failure_action": st.sampled_from(["reboot", "halt", "poweroff", "shell",
                                           "dump_to_rootfs"]),
        "final_action": st.sampled_from(["reboot", "halt", "poweroff"]),
        "force_rebuild": st.sampled_from(["0", "1"]),
        "force_no_rebuild": st.just("0"),
        "auto_reset_crashkernel": st.sampled_from(["yes", "no"]),
        "dracut_args": st.tuples(st.lists(module, max_size=3), st.lists(module, max_size=3),
                                 st.sampled_from(["", "-o 'plymouth x'", "--hostonly"]),
                                 st.lists(st.sampled_from(["lvm", "mdraid", "crypt", "btrfs",
                                                           "multipath", "dm"]),
                                          max_size=3, unique=True),
                                 st.sampled_from(["--add", "-a", "--add="]))
        .map(lambda t: shlex.join(["--add-drivers", " ".join(t[0]) or "m",
                                   "--omit-drivers=" + ",".join(t[1] or ["n"])]) + " " + t[2]
             + ("" if not t[3] else " " + (f"--add={','.join(t[3])}" if t[4] == "--add="
                                           else shlex.join([t[4], " ".join(t[3])])))),
        "target": st.one_of(
            st.tuples(st.sampled_from(["ext2", "ext3", "ext4", "xfs", "btrfs"]),
                      st.one_of(uuid.map(lambda u: "UUID=" + u),
                                st.from_regex(r"/dev/[a-z]{2,6}[0-9]?", fullmatch=True),
                                st.from_regex(r"LABEL=[A-Za-z0-9]"
                                              r"([A-Za-z0-9 _-]{0,10}[A-Za-z0-9])?",
                                              fullmatch=True)))
            .map(" ".join),
            st.sampled_from(["raw /dev/vdb", "nfs srv:/export", "nfs [2001:db8::1]:/e",
                             "ssh root@10.0.2.2", "ssh u@2001:db8::1"]),
        ),
    }
    strategy = options[directive]
    if directive == "target":
        return strategy
    return strategy.map(lambda v: f"{directive} {v}")


@st.composite
def kdump_conf(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from(sorted(
        ["target", "path", "sshkey", "kdump_pre", "kdump_post", "core_collector",
         "extra_bins", "extra_modules", "failure_action", "final_action", "force_rebuild",
         "force_no_rebuild", "auto_reset_crashkernel", "dracut_args"])), unique=True))
    lines = []
    for key in keys:
        line = draw(directive_line(key))
        option, _, value = line.partition(" ")
        if value != value.rstrip() or (
                draw(st.booleans()) and not (value.startswith('"') and value.endswith('"'))):
            value = f'"{value}"'
        sep = draw(st.sampled_from([" ", "\t", " \t "]))
        lead = draw(st.sampled_from(["", " ", "\t"]))
        comment = draw(st.sampled_from(["", " # note", "\t#", "  # é ☃"]))
        lines.append(f"{lead}{option}{sep}{value}{comment}")
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "# comment", "   ", "#raw /dev/x"])))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join(lines) + draw(st.sampled_from(["", end]))


def semantic(config: KdumpConfig) -> KdumpConfig:
    """The settings alone: not where they came from nor whether they were defaults."""
    return replace(config, source="", warnings=(), explicit=frozenset(), locations=(),
                   core_collector_written=None, target=replace(config.target, where=None))


@SETTINGS
@given(st.text())
def test_random_text_never_raises(text: str) -> None:
    result = parse_kdump_conf(text)
    assert (result.config is None) == bool(result.errors)


@SETTINGS
@given(st.binary())
def test_random_bytes_never_raise(data: bytes) -> None:
    result = parse_kdump_conf_bytes(data)
    assert (result.config is None) == bool(result.errors)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([*KNOWN, "net", "minix", "bogus", "#", ""]),
                          st.text(max_size=30)), max_size=8),
       st.sampled_from(["\n", "\r\n"]))
def test_known_directives_with_random_values_never_raise(
        pairs: list[tuple[str, str]], end: str) -> None:
    result = parse_kdump_conf(end.join(f"{k} {v}" for k, v in pairs))
    for diag in (*result.errors, *result.warnings):
        assert diag.where is not None and diag.message


@SETTINGS
@given(kdump_conf())
def test_generated_files_parse_and_show_round_trips(text: str) -> None:
    first = parse_kdump_conf(text, "in.conf")
    assert first.config is not None, [str(e) for e in first.errors]
    shown = render_kdump_conf(first.config)
    second = parse_kdump_conf(shown, "show.conf")
    assert second.config is not None, (shown, [str(e) for e in second.errors])
    assert semantic(second.config) == semantic(first.config)
    assert render_kdump_conf(replace(second.config, explicit=first.config.explicit,
                                     source=first.config.source)) == shown


@SETTINGS
@given(kdump_conf(), st.sampled_from([
    "local", "local:/dev/vdb", "ext4:UUID=0a1b2c3d-4e5f-6789-abcd-ef0123456789:/c",
    "raw:/dev/vdc", "nfs:h:/e/x", "ssh:u@h:/d", "nfs", "ssh"]))
def test_cli_target_never_raises_anything_but_user_errors(text: str, spec: str) -> None:
    config = parse_kdump_conf(text).config
    assume(config is not None)
    assert config is not None
    try:
        out = apply_target(config, *parse_target_spec(spec))
    except MkkdumprdError as exc:
        assert exc.exit_code == 2
        return
    again = parse_kdump_conf(render_kdump_conf(out)).config
    if out.target.fstype is not None or out.target.device is None:
        assert again is not None and semantic(again) == semantic(out)


def _capture_expected(config: KdumpConfig, kind: TargetKind, device: str | None,
                      fstype: str | None, server: str | None, path: str) -> KdumpConfig:
    """`config` as the image's kdump.conf states it: the resolved target, and the defaults
    for the settings the image does not carry for this kind of target."""
    carried = {f for d in SETTINGS_ROWS if kind in d.capture for f in d.fields}
    defaults = KdumpConfig()
    reset = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(KdumpConfig)
             if f.name not in carried}
    resolved = replace(config, target=Target(kind, device=device, fstype=fstype,
                                             server=server), path=path)
    return replace(resolved, **reset)


@SETTINGS
@given(kdump_conf(), st.sampled_from([None, "ext4", "xfs"]),
       st.sampled_from(["/dev/vdb", "UUID=0a1b2c3d-4e5f-6789-abcd-ef0123456789",
                        "LABEL=my dump"]),
       st.one_of(value_text.map(lambda v: "/" + v), st.just("/")))
def test_image_kdump_conf_parses_back_to_the_same_settings(
        text: str, fstype: str | None, device: str, resolved_path: str) -> None:
    """render(parse(x)) for the image parses to the same KdumpConfig (issue 14 item 16)."""
    config = parse_kdump_conf(text, "in.conf").config
    assert config is not None
    kind = config.target.kind
    server = config.target.server
    if kind is TargetKind.LOCAL:
        device = config.target.device or device
        fstype = config.target.fstype or fstype
    elif kind is TargetKind.RAW:
        device, fstype = config.target.device or device, None
    else:
        device, fstype = None, None
    image = capture_conf(config, kind, device=device, fstype=fstype, server=server,
                         path=resolved_path)
    again = parse_kdump_conf(image, "image.conf")
    assert again.config is not None, (image, [str(e) for e in again.errors])
    expected = _capture_expected(config, kind, device, fstype, server, resolved_path)
    if kind is TargetKind.LOCAL and fstype is None:
        # No type: the line is a comment and the image's file names no target.
        expected = replace(expected, target=Target(TargetKind.LOCAL))
    assert semantic(again.config) == semantic(expected), image
