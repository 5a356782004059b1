"""NFS target parsing and Fedora's option rewrite from mountinfo / fstab."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host
from mkkdumprd.network.nfs_options import (
    NfsExport,
    capture_mount,
    parse_export,
    rewrite_options,
)

MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "97 27 0:55 / /mnt/crash ro,relatime shared:50 - nfs4 nas.example.org:/srv/crash/ "
    "ro,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,"
    "sec=sys,clientaddr=10.0.0.5,local_lock=none,addr=10.0.0.9\n"
    "98 27 0:56 / /mnt/old\\040dumps rw - nfs [fd00::9]:/exp "
    "rw,vers=3,proto=tcp6,mountaddr=fd00::9,mountvers=3,mountport=20048,mountproto=udp6,"
    "addr=fd00::9\n"
)


def test_parse_export_forms() -> None:
    assert parse_export("NAS.example.org:/srv//crash/") == NfsExport("nas.example.org",
                                                                     "/srv/crash")
    assert parse_export("[2001:db8::1:2:3:4]:/export/tmp") == NfsExport("2001:db8::1:2:3:4",
                                                                        "/export/tmp")
    assert parse_export("fd00::1:/export").host == "fd00::1"
    assert parse_export("fd00::1:/export").spec == "[fd00::1]:/export"
    assert parse_export("srv:/").export == "/"
    for bad in ("srv", "srv:export", ":/x", "[fd00::1]/x", "-oX:/x", "a b:/x"):
        with pytest.raises(UsageError, match="NFS target"):
            parse_export(bad)


def test_rewrite_drops_addresses_and_boot_options() -> None:
    got = rewrite_options(["ro", "noauto", "nofail", "nobootwait", "vers=4.1", "addr=1.2.3.4",
                           "mountaddr=x", "proto=tcp", "mountproto=udp", "clientaddr=5.6.7.8",
                           "ro", "hard", "_netdev"])
    assert got == ("rw", "vers=4.1", "hard")
    assert rewrite_options([]) == ("defaults",)
    assert rewrite_options(["nofail"]) == ("defaults",)


def test_live_mount_wins(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text("nas.example.org:/srv/crash /mnt nfs soft 0 0\n")
    m = capture_mount(Host(tmp_path), parse_export("nas.example.org:/srv/crash"))
    assert (m.source, m.fstype) == ("mountinfo", "nfs4")
    assert m.option_string == ("rw,relatime,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,"
                               "hard,timeo=600,retrans=2,sec=sys,local_lock=none")
    v3 = capture_mount(Host(tmp_path), parse_export("[fd00::9]:/exp"))
    assert (v3.fstype, v3.options) == ("nfs", ("rw", "vers=3", "mountvers=3",
                                               "mountport=20048"))


def test_fstab_then_defaults(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text(
        "# comment\nUUID=abc / ext4 defaults 0 1\n"
        "nas:/crash /var/crash nfs ro,noauto,nfsvers=4.1,x-systemd.automount 0 0\n")
    m = capture_mount(Host(tmp_path), parse_export("nas:/crash/"))
    assert (m.source, m.fstype, m.options) == (
        "fstab", "nfs4", ("rw", "nfsvers=4.1", "x-systemd.automount"))
    d = capture_mount(Host(tmp_path), parse_export("other:/x"))
    assert (d.source, d.fstype, d.options) == ("defaults", "nfs", ("defaults",))
