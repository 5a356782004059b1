"""Host: paths of the described system, symlinks followed inside its root only; its one
mountinfo parser, meminfo, is_live and the probes tests replace."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host, HostError, Mount, Ran, parse_meminfo, parse_mountinfo


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libc.so.6").write_text("libc")
    os.symlink("usr/lib", tmp_path / "lib")                      # merged /usr, relative
    os.symlink("/usr/lib/x86_64-linux-gnu/libc.so.6", tmp_path / "usr/lib/libc-abs")
    os.symlink("../../../../../etc/shadow", tmp_path / "usr/lib/escape")
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    return tmp_path


def test_links_are_followed_inside_the_root(root: Path) -> None:
    view = Host(root)
    real, links = view.resolve_links("/lib/x86_64-linux-gnu/libc.so.6")
    assert real == PurePosixPath("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert links == [(PurePosixPath("/lib"), "usr/lib")]
    assert view.read_text("/lib/x86_64-linux-gnu/libc.so.6") == "libc"


def test_absolute_targets_are_taken_relative_to_the_root(root: Path) -> None:
    real, links = Host(root).resolve_links("/lib/libc-abs")
    assert real == PurePosixPath("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert [str(p) for p, _ in links] == ["/lib", "/usr/lib/libc-abs"]


def test_dotdot_never_climbs_above_the_root(root: Path) -> None:
    view = Host(root)
    assert view.resolve("/usr/lib/escape") == PurePosixPath("/etc/shadow")
    assert not view.exists("/usr/lib/escape")  # the host's /etc/shadow is not reached


def test_symlink_loops_are_a_one_line_operation_error_naming_the_path(root: Path) -> None:
    with pytest.raises(OperationError, match="too many levels of symbolic links") as err:
        Host(root).resolve("/loop-a/x")
    assert str(root / "loop-a/x") in str(err.value) and "\n" not in str(err.value)
    # still an OSError: readers of optional files (sysfs attributes) keep tolerating it
    assert isinstance(err.value, OSError)
    assert Host(root).read_optional("/loop-a/x") is None


def test_unreadable_files_are_a_one_line_error_naming_the_real_path(root: Path) -> None:
    with pytest.raises(HostError, match=rf"^cannot read {root}/usr/lib: ") as err:
        Host(root).read_text("/lib")          # a directory, reached through /lib -> usr/lib
    assert err.value.errno is not None
    with pytest.raises(OperationError, match=rf"cannot read {root}/nope"):
        Host(root).read_bytes("/nope")
    with pytest.raises(OperationError, match=rf"cannot read {root}/nope"):
        Host(root).stat("/nope")


def test_missing_tails_are_kept(root: Path) -> None:
    assert Host(root).resolve("/lib/nope/x") == PurePosixPath("/usr/lib/nope/x")


# -- mountinfo: the one parser ------------------------------------------------------------

MOUNTINFO = (
    "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
    # a bind mount of a subdirectory: root is not /; escapes in root, point and source
    r"36 22 254:17 /sub\040dir /mnt/my\040dumps rw shared:2 master:1 - ext4 /dev/disk\134x rw"
    "\n"
    r"37 22 0:40 / /mnt/tab\011here ro - tmpfs none"          # no superblock options
    "\n"
    "38 22 0:41 / /srv/nfs rw,noatime - nfs4 nas:/export rw,vers=4.2,addr=10.0.0.1\n"
    "garbage line\n"
)


def test_mountinfo_is_parsed_with_escapes_optional_fields_and_the_root_field() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert [m.mountpoint for m in mounts] == ["/", "/mnt/my dumps", "/mnt/tab\there", "/srv/nfs"]
    bind = mounts[1]
    assert bind == Mount(majmin="254:17", root="/sub dir", mountpoint="/mnt/my dumps",
                         options="rw", fstype="ext4", source="/dev/disk\\x", superopts="rw")
    assert mounts[0].root == "/" and mounts[0].superopts == "rw,errors=remount-ro"
    assert mounts[2].superopts == "" and mounts[2].options == "ro"
    assert mounts[3].options == "rw,noatime" and mounts[3].source == "nas:/export"


def test_mounts_and_mount_of_read_the_roots_mountinfo(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    (tmp_path / "mnt/my dumps/crash").mkdir(parents=True)
    os.symlink("/mnt/my dumps/crash", tmp_path / "crash")
    host = Host(tmp_path)
    assert host.mounts() == parse_mountinfo(MOUNTINFO)
    m = host.mount_of("/crash")                   # through a symlink, longest mount point
    assert m is not None and m.mountpoint == "/mnt/my dumps" and m.root == "/sub dir"
    m = host.mount_of("/srv/nfsx/y")              # a prefix of a name is not a parent
    assert m is not None and m.mountpoint == "/"
    assert Host(tmp_path / "none").mounts() == []


def test_the_nfs_options_use_the_same_mounts(tmp_path: Path) -> None:
    from mkkdumprd.network.nfs_options import capture_mount, parse_export

    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    host = Host(tmp_path)
    nfs = capture_mount(host, parse_export("nas:/export"))
    assert nfs.source == "mountinfo" and nfs.fstype == "nfs4"
    assert nfs.options == ("rw", "noatime", "vers=4.2")        # addr= dropped
    m = host.mount_of("/mnt/my dumps/x")
    assert m is not None and m.source == "/dev/disk\\x"


# -- meminfo -------------------------------------------------------------------------------

def test_meminfo_is_in_bytes_and_keeps_counts(tmp_path: Path) -> None:
    text = "MemTotal:        2017204 kB\nMemFree:  1 kB\nHugePages_Total:       4\nbad\n"
    assert parse_meminfo(text) == {"MemTotal": 2017204 * 1024, "MemFree": 1024,
                                   "HugePages_Total": 4}
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text(text)
    assert Host(tmp_path).meminfo()["MemTotal"] == 2017204 * 1024
    assert Host(tmp_path / "none").meminfo() == {}


# -- is_live and the probes ----------------------------------------------------------------

def test_is_live_means_the_root_is_this_machines(tmp_path: Path) -> None:
    assert Host.this_machine().is_live
    assert Host(Path("/")).is_live
    os.symlink("/", tmp_path / "slash")
    assert Host(tmp_path / "slash").is_live         # another spelling of /
    assert not Host(tmp_path).is_live
    assert Host(tmp_path, live=True).is_live        # tests run the live-only checks
    assert not Host(Path("/"), live=False).is_live


def test_probes_are_replaceable_and_not_part_of_equality(tmp_path: Path) -> None:
    calls: list[tuple[str, int, float]] = []

    def probe(addr: str, port: int, timeout: float) -> str | None:
        calls.append((addr, port, timeout))
        return "Connection refused"

    def run(argv: object, timeout: float | None) -> Ran:
        return Ran(3, "out", "err")

    host = Host(tmp_path, probe_tcp=probe, run=run)
    assert host.probe_tcp("192.0.2.1", 2049, 5.0) == "Connection refused"
    assert calls == [("192.0.2.1", 2049, 5.0)]
    assert host.run(["true"], None) == Ran(3, "out", "err")
    assert host == Host(tmp_path)


def test_the_real_runner_reports_what_cannot_run_in_one_line() -> None:
    host = Host.this_machine()
    assert host.run(["sh", "-c", "echo hi; echo no >&2; exit 3"], 10.0) == Ran(3, "hi\n", "no\n")
    with pytest.raises(OperationError, match=r"^cannot run /nonexistent/tool: "):
        host.run(["/nonexistent/tool"], 10.0)


def test_the_real_tcp_probe_says_why_it_failed() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert Host.this_machine().probe_tcp("127.0.0.1", port, 5.0) is None
    why = Host.this_machine().probe_tcp("127.0.0.1", port, 5.0)     # closed now
    assert why is not None and "refused" in why.lower()


def test_a_symlink_loop_in_a_sysroot_is_a_one_line_build_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mkkdumprd.cli import main

    (tmp_path / "lib/modules/6.1.0-x").mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    os.symlink("loop-b", tmp_path / "bin/loop-a")
    os.symlink("loop-a", tmp_path / "bin/loop-b")
    os.symlink("loop-a", tmp_path / "bin/busybox")
    r = CliRunner().invoke(main, ["build", "--sysroot", str(tmp_path), "--kver", "6.1.0-x",
                                  "--arch", "x86_64", "--no-hostonly", "--target",
                                  "local:/dev/vda:/var/crash", "-o", str(tmp_path / "o.img")])
    assert r.exit_code == 1, r.output
    assert r.stderr == (f"mkkdumprd: error: {tmp_path}/bin/busybox: too many levels of "
                        f"symbolic links at /bin/loop-b\n")


def test_names_go_to_the_resolver_only_of_the_live_machine(tmp_path: Path) -> None:
    from mkkdumprd.network.resolve import resolve_host

    asked: list[str] = []

    def dns(name: str) -> list[str]:
        asked.append(name)
        return ["fd00::5", "192.0.2.5"]

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hosts").write_text("192.0.2.9 nas\n")
    live = Host(tmp_path, live=True, probe_dns=dns)
    assert str(resolve_host(live, "nas").address) == "192.0.2.9"        # /etc/hosts first
    assert str(resolve_host(live, "backup").address) == "192.0.2.5"     # IPv4 preferred
    assert asked == ["backup"]
    with pytest.raises(OperationError, match="cannot resolve the dump target host 'backup'"):
        resolve_host(Host(tmp_path, probe_dns=dns), "backup")           # a sysroot: never
    assert asked == ["backup"]
