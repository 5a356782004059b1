"""kdump.conf parsing: every directive, every rejected form, real-file quirks, hostile values."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.config.kdumpconf import (
    ParseResult,
    load_kdump_conf,
    parse_kdump_conf,
    parse_kdump_conf_bytes,
    read_kdump_conf,
)
from mkkdumprd.config.model import (
    DEFAULT_COLLECTOR,
    DEFAULT_SSHKEY,
    Action,
    KdumpConfig,
    TargetKind,
)
from mkkdumprd.config.render import render_kdump_conf
from mkkdumprd.errors import ConfigError, Location

UUID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"


def ok(text: str) -> KdumpConfig:
    result = parse_kdump_conf(text, "k.conf")
    assert result.errors == (), [str(e) for e in result.errors]
    assert result.config is not None
    return result.config


def bad(text: str) -> ParseResult:
    result = parse_kdump_conf(text, "k.conf")
    assert result.config is None
    assert result.errors
    return result


def messages(result: ParseResult) -> str:
    return "\n".join(str(e) for e in result.errors)


# ---- defaults and the shipped Fedora file -------------------------------------------------

def test_empty_file_gives_fedora_defaults() -> None:
    config = ok("")
    assert config.target.kind is TargetKind.LOCAL and config.target.device is None
    assert config.path == "/var/crash"
    assert config.core_collector == DEFAULT_COLLECTOR
    assert config.sshkey == DEFAULT_SSHKEY
    assert config.failure_action is Action.REBOOT and config.final_action is Action.REBOOT
    assert not config.force_rebuild and not config.force_no_rebuild
    assert config.auto_reset_crashkernel
    assert config.explicit == frozenset()


FEDORA_SHIPPED = """\
# This file contains a series of commands to perform (in order) in the kdump
# kernel after a kernel crash in the crash kernel(1st kernel) has happened.
#
#raw /dev/vg/lv_kdump
#ext4 /dev/vg/lv_kdump
#nfs my.server.com:/export/tmp
#ssh user@my.server.com
#sshkey /root/.ssh/kdump_id_rsa
auto_reset_crashkernel yes
path /var/crash
core_collector makedumpfile -l --message-level 7 -d 31
#core_collector scp
#kdump_post /var/crash/scripts/kdump-post.sh
#dracut_args --omit-drivers "cfg80211 snd" --add-drivers "ext2 ext3"
#fence_kdump_args -p 7410 -f auto -c 0 -i 10
#fence_kdump_nodes node1 node2
"""


def test_fedora_shipped_file_is_valid_and_explicit() -> None:
    config = ok(FEDORA_SHIPPED)
    assert config.explicit == {"auto_reset_crashkernel", "path", "core_collector"}
    assert config.core_collector == DEFAULT_COLLECTOR
    assert config.location("path") == Location("k.conf", 10)
    assert config.location("sshkey") is None
    assert config.warnings == ()


# ---- targets ------------------------------------------------------------------------------

@pytest.mark.parametrize("fstype", ["ext2", "ext3", "ext4", "xfs", "btrfs"])
@pytest.mark.parametrize("device", [
    "/dev/vdb1", f"UUID={UUID}", f"UUID={UUID.upper()}", "LABEL=kdump", "LABEL=my dump",
    f"PARTUUID={UUID}", "PARTUUID=1234abcd-02", "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
    "/dev/mapper/vg-kdump",
])
def test_local_targets(fstype: str, device: str) -> None:
    config = ok(f"{fstype} {device}\n")
    assert config.target.kind is TargetKind.LOCAL
    assert (config.target.fstype, config.target.device) == (fstype, device)
    assert config.target.where == Location("k.conf", 1)
    assert "target" in config.explicit


@pytest.mark.parametrize("device", [
    "vdb1", "/var/crash", "/dev/", "UUID=1234", f"UUID={UUID}0", "UUID=", "LABEL=",
    "PARTUUID=1234abcd-2", "PARTUUID=xyz", 'UUID="' + UUID + '"', "/dev/my disk",
])
def test_bad_devices(device: str) -> None:
    result = bad(f"ext4 {device}\n")
    text = messages(result)
    assert "k.conf:1:" in text
    assert "UUID=" in text or "LABEL=" in text  # says what would be valid


def test_raw_target_gets_flattened_default_collector() -> None:
    config = ok("raw /dev/vdb\n")
    assert config.target.kind is TargetKind.RAW and config.target.device == "/dev/vdb"
    assert config.core_collector == ("makedumpfile", "-F", *DEFAULT_COLLECTOR[1:])
    assert "core_collector" not in config.explicit


@pytest.mark.parametrize("server,host,export", [
    ("nfs.example.com:/export/tmp", "nfs.example.com", "/export/tmp"),
    ("10.0.2.2:/srv", "10.0.2.2", "/srv"),
    ("[2001:db8::1:2:3:4]:/export/tmp", "2001:db8::1:2:3:4", "/export/tmp"),
    ("server:/", "server", "/"),
])
@pytest.mark.parametrize("directive", ["nfs", "nfs4"])
def test_nfs_targets(directive: str, server: str, host: str, export: str) -> None:
    config = ok(f"{directive} {server}\n")
    assert config.target.kind is TargetKind.NFS and config.target.server == server
    assert config.core_collector == DEFAULT_COLLECTOR


@pytest.mark.parametrize("server", [
    "server", "server:export", ":/export", "2001:db8::1:/export", "[10.0.0.1]:/x",
    "[2001:db8::1:/x", "[2001:db8::1]/x", "bad_host!:/x", "999.1.1.1:/x", "h:/a b",
    "-h:/x",
])
def test_bad_nfs_servers(server: str) -> None:
    assert "HOST:/EXPORT" in messages(bad(f"nfs {server}\n"))


@pytest.mark.parametrize("server", [
    "root@dump.example.com", "kdump@10.0.2.2", "user@2001:db8::1:2:3:4", "a.b-c_d@h",
])
def test_ssh_targets(server: str) -> None:
    config = ok(f"ssh {server}\n")
    assert config.target.kind is TargetKind.SSH and config.target.server == server
    assert "-F" in config.core_collector


@pytest.mark.parametrize("server,hint", [
    ("dump.example.com", "no user"),
    ("@host", "no user"),
    ("root@", "no host"),
    ("root@[2001:db8::1]", "without brackets"),
    ("ro ot@host", "user name"),
    ("root@host name", "host name"),
    ("root@2001:db8:::1", "IPv6"),
])
def test_bad_ssh_servers(server: str, hint: str) -> None:
    assert hint in messages(bad(f"ssh {server}\n"))


@pytest.mark.parametrize("fstype", ["minix", "virtiofs"])
def test_unsupported_fstypes(fstype: str) -> None:
    assert "not supported by mkkdumprd" in messages(bad(f"{fstype} /dev/vdb\n"))


def test_two_targets_is_an_error_naming_both_lines() -> None:
    result = bad("ext4 /dev/vdb\n# x\nnfs h:/e\n")
    (err,) = result.errors
    assert err.where == Location("k.conf", 3)
    assert "more than one dump target" in err.message and "k.conf:1" in err.message


def test_two_invalid_targets_still_counts_as_two() -> None:
    result = bad("ext4 vdb\nraw /dev/vdb\n")
    assert len(result.errors) == 2


# ---- settings -----------------------------------------------------------------------------

def test_every_setting() -> None:
    config = ok(
        "ssh kdump@10.0.2.2\n"
        "sshkey /root/.ssh/other_key\n"
        "path /srv/crash\n"
        "core_collector makedumpfile -F -c --message-level 1 -d 31\n"
        "kdump_pre /usr/local/bin/pre\n"
        "kdump_post /usr/local/bin/post\n"
        "extra_bins /usr/bin/lsblk ip\n"
        "extra_modules virtio_net e1000e\n"
        "failure_action dump_to_rootfs\n"
        "final_action poweroff\n"
        "force_rebuild 1\n"
        "force_no_rebuild 0\n"
        "auto_reset_crashkernel no\n"
        'dracut_args --add-drivers "nvme ahci" --omit-drivers=snd\n'
    )
    assert config.sshkey == "/root/.ssh/other_key"
    assert config.path == "/srv/crash"
    assert config.core_collector == ("makedumpfile", "-F", "-c", "--message-level", "1",
                                     "-d", "31")
    assert config.core_collector_written == config.core_collector
    assert (config.kdump_pre, config.kdump_post) == ("/usr/local/bin/pre",
                                                     "/usr/local/bin/post")
    assert config.extra_bins == ("/usr/bin/lsblk", "ip")
    assert config.extra_modules == ("virtio_net", "e1000e")
    assert config.failure_action is Action.DUMP_TO_ROOTFS
    assert config.final_action is Action.POWEROFF
    assert config.force_rebuild and not config.force_no_rebuild
    assert not config.auto_reset_crashkernel
    assert config.add_drivers == ("nvme", "ahci") and config.omit_drivers == ("snd",)
    assert len(config.explicit) == 14
    assert config.warnings == ()


@pytest.mark.parametrize("action", ["reboot", "halt", "poweroff", "shell", "dump_to_rootfs"])
def test_failure_actions(action: str) -> None:
    assert ok(f"failure_action {action}\n").failure_action is Action(action)


def test_default_is_obsolete_alias_with_warning() -> None:
    config = ok("default halt\n")
    assert config.failure_action is Action.HALT
    (warning,) = config.warnings
    assert warning.where == Location("k.conf", 1) and "failure_action halt" in warning.message
    assert "failure_action" in config.explicit


def test_default_and_failure_action_together_is_a_duplicate() -> None:
    assert "already set at k.conf:1" in messages(bad("failure_action halt\ndefault reboot\n"))


@pytest.mark.parametrize("line,valid", [
    ("failure_action explode", "reboot, halt, poweroff, shell, dump_to_rootfs"),
    ("failure_action Reboot", "reboot, halt"),
    ("default nothing", "dump_to_rootfs"),
    ("final_action shell", "reboot, halt, poweroff"),
    ("final_action dump_to_rootfs", "failure_action value"),
    ("force_rebuild yes", "use 0 or 1"),
    ("force_no_rebuild 2", "use 0 or 1"),
    ("auto_reset_crashkernel 1", "yes or no"),
    ("path var/crash", "absolute"),
    ("path '/var/crash'", "absolute"),
    ("sshkey id_rsa", "absolute"),
    ("kdump_pre pre.sh", "absolute"),
    ("kdump_post ./post.sh", "absolute"),
    ("extra_bins bin/tool", "relative path"),
    ("extra_bins ''", "empty entry"),
    ("extra_modules foo.ko", "kernel module name"),
    ("extra_modules ../evil", "kernel module name"),
    ("core_collector -l", "must start with the command"),
    ("core_collector '' -l", "must start with the command"),
    ("core_collector makedumpfile 'unbalanced", "unbalanced quote"),
    ('core_collector "makedumpfile -l', "unbalanced quote"),
    ("dracut_args --add-drivers", "needs a list of modules"),
    ("dracut_args --add-drivers 'bad/name'", "kernel module name"),
    ('dracut_args --mount "/dev/vdb /mnt vfat defaults"', "is not supported"),
    ("dracut_args --mount=x", "needs at least a device"),
    ("fence_kdump_args -p 99999", "port from 1 to 65535"),
    ("fence_kdump_nodes 'a;b'", "not a host name"),
])
def test_rejected_values(line: str, valid: str) -> None:
    result = bad(line + "\n")
    (err,) = result.errors
    assert err.where == Location("k.conf", 1)
    assert valid in err.message
    assert err.text == line


@pytest.mark.parametrize("directive", [
    "raw", "nfs", "ssh", "ext4", "path", "core_collector", "sshkey", "kdump_pre",
    "kdump_post", "extra_bins", "extra_modules", "failure_action", "default", "final_action",
    "force_rebuild", "force_no_rebuild", "dracut_args", "auto_reset_crashkernel",
    "fence_kdump_nodes",
])
@pytest.mark.parametrize("empty", ["", "   ", "\t", '""', '" "', "# only a comment"])
def test_empty_values_are_errors(directive: str, empty: str) -> None:
    (err,) = bad(f"{directive} {empty}\n").errors
    assert "has no value" in err.message and "e.g." in err.message


@pytest.mark.parametrize("directive,value", [
    ("path", "/a"), ("core_collector", "cp"), ("sshkey", "/k"), ("kdump_pre", "/p"),
    ("extra_bins", "ls"), ("extra_modules", "m"), ("final_action", "halt"),
    ("force_rebuild", "0"), ("dracut_args", "--add-drivers m"),
    ("auto_reset_crashkernel", "yes"),
])
def test_duplicates_are_errors(directive: str, value: str) -> None:
    (err,) = bad(f"{directive} {value}\n\n{directive} {value}\n").errors
    assert err.where == Location("k.conf", 3)
    assert "duplicated directive" in err.message and "k.conf:1" in err.message


@pytest.mark.parametrize("directive,replacement", [
    ("net", "nfs HOST:/EXPORT"), ("options", "MODULE.PARAM=VALUE"), ("link_delay", "remove"),
    ("disk_timeout", "remove"), ("debug_mem_level", "remove"), ("blacklist", "--omit-drivers"),
])
def test_deprecated_directives(directive: str, replacement: str) -> None:
    (err,) = bad(f"{directive} something\n").errors
    assert "deprecated" in err.message and replacement in err.message


@pytest.mark.parametrize("line,hint", [
    ("pathh /var/crash", "did you mean 'path'"),
    ("Path /var/crash", "did you mean 'path'"),
    ("core-collector cp", "did you mean 'core_collector'"),
    ("path=/var/crash", "without '='"),
    ("zzz 1", "valid directives: raw, nfs, ssh"),
])
def test_unknown_directives(line: str, hint: str) -> None:
    (err,) = bad(line + "\n").errors
    assert "unknown directive" in err.message and hint in err.message


def test_both_force_flags_set_is_an_error() -> None:
    (err,) = bad("force_rebuild 1\nforce_no_rebuild 1\n").errors
    assert err.where == Location("k.conf", 2) and "k.conf:1" in err.message


# ---- the -F rule and other target-dependent checks ----------------------------------------

@pytest.mark.parametrize("target", ["raw /dev/vdb", "ssh root@host"])
@pytest.mark.parametrize("collector", [
    "makedumpfile -l --message-level 7 -d 31",
    "/usr/sbin/makedumpfile -l -d 31",
    "makedumpfile -d F",  # F here is -d's argument, not the flag
    "makedumpfile -- -F",
])
def test_streamed_targets_need_flattened_makedumpfile(target: str, collector: str) -> None:
    result = bad(f"{target}\ncore_collector {collector}\n")
    (err,) = result.errors
    assert err.where == Location("k.conf", 2) and "lacks -F" in err.message


@pytest.mark.parametrize("target", ["raw /dev/vdb", "ssh root@host"])
@pytest.mark.parametrize("collector", ["makedumpfile -F -l", "makedumpfile -lF -d 31",
                                       '"makedumpfile -l -F"'])
def test_streamed_targets_with_flattened_makedumpfile(target: str, collector: str) -> None:
    assert ok(f"{target}\ncore_collector {collector}\n").warnings == ()


def test_raw_with_other_collector_warns_about_manual_recovery() -> None:
    config = ok("raw /dev/vdb\ncore_collector dd bs=1M\n")
    assert "manually" in config.warnings[0].message


def test_filesystem_target_drops_written_flat_flag_with_warning() -> None:
    config = ok("ext4 /dev/vdb\ncore_collector makedumpfile -F -l -d 31\n")
    assert config.core_collector == ("makedumpfile", "-l", "-d", "31")
    assert config.core_collector_written == ("makedumpfile", "-F", "-l", "-d", "31")
    assert "dropped" in config.warnings[0].message


def test_sshkey_without_ssh_and_path_with_raw_warn() -> None:
    config = ok("raw /dev/vdb\nsshkey /k\npath /p\n")
    assert [w.where.line for w in config.warnings if w.where] == [2, 3]


# ---- line handling as in real files -------------------------------------------------------

def test_crlf_tabs_comments_quotes_and_no_final_newline() -> None:
    text = ("# kdump.conf — écrit à la main ☃\r\n"
            "\t ext4\t\tUUID=" + UUID + "   # the dump disk\r\n"
            "\r\n"
            "   # indented comment\r\n"
            'core_collector\t"makedumpfile -l --message-level 7 -d 31"\t# quoted\r\n'
            "path /var/crash")
    config = ok(text)
    assert config.target.device == f"UUID={UUID}"
    assert config.core_collector == DEFAULT_COLLECTOR
    assert config.path == "/var/crash"
    assert config.location("path") == Location("k.conf", 6)
    assert config.warnings == ()


def test_hash_inside_a_value_starts_a_comment_as_in_fedora() -> None:
    config = ok("path /var/crash#old\n")
    assert config.path == "/var/crash"
    assert "'#' starts a comment" in config.warnings[0].message


def test_inner_quotes_are_kept_and_only_outer_quotes_stripped() -> None:
    config = ok('dracut_args --omit-drivers "cfg80211 snd" --add-drivers "ext2 ext3"\n')
    assert config.omit_drivers == ("cfg80211", "snd")
    assert config.add_drivers == ("ext2", "ext3")
    assert ok('core_collector ""cp" "a b""\n').core_collector == ("cp", "a b")
    assert ok('path "/with space"\n').path == "/with space"


def test_utf8_bom_is_ignored() -> None:
    assert ok("\ufeffpath /x\n").path == "/x"


@pytest.mark.parametrize("data,what", [
    (b"path /var/\x00crash\n", "NUL"),
    (b"# \x00 in a comment\n", "NUL"),
    (b"path /var/\xffcrash\n", "UTF-8"),
    (b"# caf\xe9 latin-1 comment\n", "UTF-8"),
    (b"path /var\x1b[31m\n", "U+001B"),
    (b"path /a\rfinal_action halt\n", "CR inside a line"),
    (b"path /a\x0bb\n", "U+000B"),
    ("path /a\u2028b\n".encode(), "U+2028"),
])
def test_binary_junk_is_an_error_not_a_traceback(data: bytes, what: str) -> None:
    result = parse_kdump_conf_bytes(data, "k.conf")
    assert result.config is None
    (err,) = result.errors
    assert err.where == Location("k.conf", 1) and what in err.message
    err.text.encode("utf-8")  # printable: invalid bytes were replaced


def test_every_error_is_reported_with_its_line() -> None:
    text = "bogus 1\npath rel\nnet x\next4 nodev\nfinal_action shell\nforce_rebuild 9\n"
    result = bad(text)
    assert [e.where.line for e in result.errors if e.where] == [1, 2, 3, 4, 5, 6]
    assert all(e.text == line for e, line in zip(result.errors, text.splitlines(), strict=True))


def test_dracut_args_other_flags_warn_and_are_ignored() -> None:
    config = ok('dracut_args -o "watchdog plymouth" --add-drivers=virtio_blk,virtio_net '
                "--compress zstd --hostonly\n")
    assert config.add_drivers == ("virtio_blk", "virtio_net")
    ignored = [w.message for w in config.warnings]
    assert len(ignored) == 3
    assert "'watchdog plymouth'" in ignored[0] and "--compress zstd" in ignored[1]


def test_dracut_args_add_selects_our_storage_modules() -> None:
    config = ok('dracut_args --add "lvm mdraid" -a crypt --add=multipath,btrfs --add lvm '
                '--add "dm dmsquash-live nfs"\n')
    assert config.add_modules == ("lvm", "mdraid", "crypt", "multipath", "btrfs")
    ignored = [w.message for w in config.warnings]
    assert len(ignored) == 3, ignored
    assert "--add dm is ignored: device-mapper's kernel module comes with" in ignored[0]
    assert "dmsquash-live is ignored: a live-media root" in ignored[1]
    assert "nfs is ignored: an nfs target adds" in ignored[2]
    assert "'lvm mdraid crypt multipath btrfs'" in render_kdump_conf(config)
    assert "needs a list of dracut modules" in bad("dracut_args --add\n").errors[0].message
    assert "needs a list of dracut modules" in bad("dracut_args -a -o x\n").errors[0].message


# ---- hostile values: carried verbatim, never interpreted ----------------------------------

@pytest.mark.parametrize("value", [
    "/var/crash; rm -rf /", "/var/$(reboot)", "/var/`id`", "/var/'quote", '/var/"dq',
    "/var/a b", "/var/$HOME", "/var/a\\b", "/var/*", "/var/crash && halt",
])
def test_hostile_paths_are_carried_verbatim(value: str) -> None:
    config = ok(f"path {value}\n")
    assert config.path == value


def test_hostile_collector_words_are_argv_not_shell() -> None:
    config = ok("core_collector makedumpfile -l '$(reboot)' ';' \"`id`\" -d 31\n")
    assert config.core_collector == ("makedumpfile", "-l", "$(reboot)", ";", "`id`", "-d",
                                     "31")


def test_a_newline_cannot_enter_a_value() -> None:
    result = parse_kdump_conf('path "/a\nfinal_action halt"\n', "k.conf")
    # Two lines: each stands alone, neither value holds a newline.
    assert result.config is None
    assert all("\n" not in (d.text or "") for d in result.errors)


# ---- files --------------------------------------------------------------------------------

def test_load_reads_file_and_raises_every_error(tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /srv\ndefault shell\n")
    config = load_kdump_conf(conf)
    assert config.path == "/srv" and config.source == str(conf)
    assert config.warnings[0].where == Location(str(conf), 2)
    conf.write_text("path rel\nbogus\n")
    with pytest.raises(ConfigError) as info:
        load_kdump_conf(conf)
    assert len(info.value.problems) == 2
    assert str(info.value).startswith(f"{conf}:1: path must be an absolute path")


def test_load_none_uses_default_file_or_fedora_defaults(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    assert load_kdump_conf(None, default=missing) == KdumpConfig()
    present = tmp_path / "kdump.conf"
    present.write_text("final_action halt")
    assert load_kdump_conf(None, default=present).final_action is Action.HALT


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    result = read_kdump_conf(tmp_path / "missing.conf")
    assert result.config is None and "cannot read" in result.errors[0].message
    with pytest.raises(ConfigError, match="No such file"):
        load_kdump_conf(tmp_path / "missing.conf")
    with pytest.raises(ConfigError, match="cannot read"):
        load_kdump_conf(tmp_path)


def test_fence_directives_are_checked_for_duplicates() -> None:
    (err,) = bad("fence_kdump_nodes a\nfence_kdump_nodes b\n").errors
    assert "duplicated directive" in err.message
    config = ok("fence_kdump_args -p 7410\n")
    assert config.explicit == frozenset({"fence_kdump_args"})
    (warning,) = config.warnings
    assert "without fence_kdump_nodes" in warning.message


# ---- path stays on the target; hook_timeout ----------------------------------------------

@pytest.mark.parametrize("path", ["/../..", "/..", "/var/crash/../../..", "/var/../crash"])
def test_path_with_dotdot_is_refused(path: str) -> None:
    result = bad(f"ext4 UUID=12345678-1234-1234-1234-123456789abc\npath {path}\n")
    assert "k.conf:2:" in messages(result)
    assert "'..'" in messages(result) and "outside" not in messages(result)


@pytest.mark.parametrize("path", ["/var/crash", "/", "/var/..crash", "/a..b/c.."])
def test_path_without_dotdot_component_is_kept(path: str) -> None:
    assert ok(f"path {path}\n").path == path


def test_hook_timeout_default_and_setting() -> None:
    assert ok("").hook_timeout == 120
    config = ok("hook_timeout 0\n")
    assert config.hook_timeout == 0 and "hook_timeout" in config.explicit


@pytest.mark.parametrize("value", ["-1", "1.5", "5s", "86401", "\u0661"])
def test_hook_timeout_rejects_what_is_not_seconds(value: str) -> None:
    assert "hook_timeout" in messages(bad(f"hook_timeout {value}\n"))


@pytest.mark.parametrize("collector", ["cp --sparse=always", "dd bs=1M"])
def test_copying_collector_warns_about_poisoned_pages(collector: str) -> None:
    config = ok(f"core_collector {collector}\n")
    assert any("hardware-poisoned" in w.message and "makedumpfile skips" in w.message
               for w in config.warnings)
    assert not any("hardware-poisoned" in w.message
                   for w in ok("core_collector makedumpfile -l -d 31\n").warnings)
