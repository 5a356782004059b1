"""The crash records read after a reboot: the outcome record's reader (bounded, fuzzed),
pstore collection into crash directories, `report`, `status`'s last crash, `pstore setup`'s
proposal and the crash_kexec_post_notifiers warning."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mkkdumprd.cli import main
from mkkdumprd.host import Host
from mkkdumprd.records import pstore
from mkkdumprd.records.crashes import list_crashes, panic_line
from mkkdumprd.records.outcome import (
    MAX_CONSOLE,
    MAX_TARGETS,
    MAX_VALUE,
    OUTCOME_FILE,
    PREFIX,
    Outcome,
    parse_outcome,
)
from mkkdumprd.records.setup import post_notifiers_warning, proposal

FAILED = f"""\
{PREFIX} version=1
{PREFIX} started=2026-12-03T10:00:00Z
{PREFIX} finished=2026-12-03T10:01:31Z
{PREFIX} duration=91
{PREFIX} kernel=6.1.0-57-amd64
{PREFIX} result=failed
{PREFIX} reason=cannot mount 10.0.2.100:/export: NFS server unreachable
{PREFIX} target.1=nfs 10.0.2.100:/export, path /var/crash
{PREFIX} target.1.result=failed
{PREFIX} target.1.detail=cannot mount 10.0.2.100:/export: NFS server unreachable
{PREFIX} console=kdump: waiting for 10.0.2.100 (85/90 s)
{PREFIX} end
"""


def test_record_from_a_ramoops_dmesg_file() -> None:
    """In the kernel log each line has a priority and time head; the last record wins."""
    log = "".join(f"<12>[   41.{i:06d}] {line}\n" for i, line in
                  enumerate(FAILED.replace("result=failed", "result=saved").splitlines()))
    log += "<6>[   42.000000] something else\n"
    log += "".join(f"<12>[   50.{i:06d}] {line}\n" for i, line in enumerate(FAILED.splitlines()))
    rec = parse_outcome(log)
    assert rec is not None and rec.complete
    assert rec.summary() == "failed: cannot mount 10.0.2.100:/export: NFS server unreachable"
    assert rec.duration == 91 and rec.kernel == "6.1.0-57-amd64"
    assert [(t.target, t.result) for t in rec.targets] == [
        ("nfs 10.0.2.100:/export, path /var/crash", "failed")]
    assert rec.console == ("kdump: waiting for 10.0.2.100 (85/90 s)",)


def test_cut_record_is_incomplete_and_unknown_values_are_dropped() -> None:
    text = f"{PREFIX} version=1\n{PREFIX} result=exploded\n{PREFIX} duration=-3\n"
    rec = parse_outcome(text)
    assert rec == Outcome(result="", duration=None)
    assert rec.summary() == "unknown (the record is incomplete)"
    assert parse_outcome("no record here\n") is None


def test_reader_is_bounded() -> None:
    lines = [f"{PREFIX} version=1", f"{PREFIX} reason=" + "x" * 100_000]
    lines += [f"{PREFIX} target.{n}=t{n}" for n in range(1, 200)]
    lines += [f"{PREFIX} console=line {n}" for n in range(300)]
    rec = parse_outcome("\n".join(lines))
    assert rec is not None
    assert len(rec.reason) == MAX_VALUE
    assert len(rec.targets) == MAX_TARGETS
    assert len(rec.console) <= MAX_CONSOLE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=80),
    st.builds(lambda k, v: f"{PREFIX} {k}={v}",
              st.sampled_from(["version", "result", "reason", "duration", "target.1",
                               "target.2.result", "target.999.detail", "console", "x"]),
              st.text(max_size=40)),
    st.just(f"{PREFIX} end")), max_size=40))
def test_reader_never_fails_and_values_are_single_lines(lines: list[str]) -> None:
    rec = parse_outcome("\n".join(lines))
    if rec is None:
        return
    json.dumps(rec.as_json())
    for value in (rec.reason, rec.started, *(t.detail for t in rec.targets), *rec.console):
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    assert rec.result in ("", "saved", "failed", "skipped")


def _pstore_file(root: Path, name: str, text: str, when: datetime) -> None:
    d = root / "sys/fs/pstore"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)
    os.utime(d / name, (when.timestamp(), when.timestamp()))


PANIC_LOG = ("Panic#1 Part1\n<6>[  12.000000] sysrq: Trigger a crash\n"
             "<0>[  12.000100] Kernel panic - not syncing: sysrq triggered crash\n")


def test_pstore_records_join_the_crash_directory_of_the_same_crash(tmp_path: Path) -> None:
    crash = tmp_path / "var/crash/127.0.0.1-2026-12-03-10:00:05"
    crash.mkdir(parents=True)
    (crash / "vmcore").write_text("core")
    (crash / "vmcore-dmesg.txt").write_text("[ 1.0] Kernel panic - not syncing: from vmcore\n")
    near = datetime(2026, 12, 3, 10, 1, 0, tzinfo=UTC)
    _pstore_file(tmp_path, "dmesg-ramoops-0", FAILED, near)
    far = datetime(2026, 12, 5, 8, 0, 0, tzinfo=UTC)
    _pstore_file(tmp_path, "dmesg-ramoops-1", PANIC_LOG, far)
    _pstore_file(tmp_path, "console-ramoops-0", "console\n", far)
    (tmp_path / "sys/fs/pstore/not-a-record").write_text("left alone")

    r = CliRunner().invoke(main, ["pstore", "--root", str(tmp_path), "--dir", "/var/crash",
                                  "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "(new directory)" in r.output and len(r.output.splitlines()) == 3
    assert sorted(os.listdir(tmp_path / "sys/fs/pstore"))[0] == "console-ramoops-0"

    r = CliRunner().invoke(main, ["pstore", "--root", str(tmp_path), "--dir", "/var/crash"])
    assert r.exit_code == 0, r.output
    assert os.listdir(tmp_path / "sys/fs/pstore") == ["not-a-record"]
    assert (crash / "pstore/dmesg-ramoops-0").exists()
    new = tmp_path / "var/crash/127.0.0.1-2026-12-05-08:00:00/pstore"
    assert sorted(os.listdir(new)) == ["console-ramoops-0", "dmesg-ramoops-1"]

    crashes = list_crashes(Host(tmp_path), [PurePosixPath("/var/crash")])
    assert [c.result() for c in crashes] == ["no dump: only pstore records",
                                             "failed: cannot mount 10.0.2.100:/export: NFS "
                                             "server unreachable"]
    assert crashes[0].panic == "Kernel panic - not syncing: sysrq triggered crash"
    assert crashes[1].panic == "Kernel panic - not syncing: from vmcore"

    r = CliRunner().invoke(main, ["report", "--root", str(tmp_path), "--dir", "/var/crash",
                                  "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc[1]["vmcore"] == "/var/crash/127.0.0.1-2026-12-03-10:00:05/vmcore"
    assert doc[1]["outcome"]["targets"][0]["result"] == "failed"
    r = CliRunner().invoke(main, ["report", "--root", str(tmp_path), "--dir", "/var/crash"])
    assert "2026-12-05 08:00:00 UTC  no dump: only pstore records" in r.output
    assert "panic:     Kernel panic - not syncing: sysrq triggered crash" in r.output

    # A second run finds nothing and moves nothing twice; a name already taken gets .1.
    r = CliRunner().invoke(main, ["pstore", "--root", str(tmp_path), "--dir", "/var/crash"])
    assert "no pstore records" in r.output
    _pstore_file(tmp_path, "dmesg-ramoops-0", "again\n", near)
    CliRunner().invoke(main, ["pstore", "--root", str(tmp_path), "--dir", "/var/crash"])
    assert (crash / "pstore/dmesg-ramoops-0.1").read_text() == "again\n"


def test_dump_directory_record_and_status_line(tmp_path: Path) -> None:
    crash = tmp_path / "var/crash/127.0.0.1-2026-12-03-10:00:05"
    crash.mkdir(parents=True)
    (crash / "vmcore").write_text("core")
    (crash / OUTCOME_FILE).write_text(FAILED.replace("result=failed", "result=saved").replace(
        "target.1.result=failed", "target.1.result=saved").replace(
        "target.1.detail=cannot", "target.1.detail=/var/crash/x/vmcore on UUID=1 and cannot"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/kdump.conf").write_text("path /var/crash\n")
    r = CliRunner().invoke(main, ["status", "--root", str(tmp_path)])
    assert ("last crash:   2026-12-03 10:00:05 UTC  saved to /var/crash/x/vmcore on UUID=1"
            in r.output), r.output
    r = CliRunner().invoke(main, ["status", "--root", str(tmp_path), "--json"])
    assert json.loads(r.output)["last_crash"]["outcome"]["result"] == "saved"
    # a kdump.conf that does not parse never fails status (report says why)
    (tmp_path / "etc/kdump.conf").write_text("no_such_directive 1\n")
    r = CliRunner().invoke(main, ["status", "--root", str(tmp_path)])
    assert r.exit_code == 3 and "saved to /var/crash/x/vmcore" in r.output, r.output
    r = CliRunner().invoke(main, ["report", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "no_such_directive" in r.output, r.output


def test_hostile_crash_directories_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "var/crash"
    root.mkdir(parents=True)
    (root / "127.0.0.1-2026-13-40-99:99:99").mkdir()          # not a date
    (root / "x-2026-12-03-10:00:05").symlink_to("/etc")          # a symlink
    (root / "y-2026-12-03-10:00:05").write_text("a file")
    ok = root / "z-2026-12-03-10:00:06"
    ok.mkdir()
    os.mkfifo(ok / OUTCOME_FILE)                                  # never opened blocking
    (ok / "vmcore-incomplete").write_text("")
    crashes = list_crashes(Host(tmp_path), [PurePosixPath("/var/crash")])
    assert [(c.directory.name, c.result()) for c in crashes] == [
        ("z-2026-12-03-10:00:06", "failed: the vmcore is incomplete")]


def test_panic_line_prefers_the_panic_message() -> None:
    assert panic_line("<4>[ 1.0] BUG: unable to handle\n<0>[ 1.1] Kernel panic - not "
                      "syncing: Fatal exception\n") == "Kernel panic - not syncing: Fatal exception"
    assert panic_line("nothing\n") == ""


IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-7ffdffff : System RAM
  01000000-01ffffff : Kernel code
  60000000-6fffffff : Crash kernel
100000000-17fffffff : System RAM
"""


def test_setup_proposal(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/iomem").write_text(IOMEM)
    words, notes = proposal(Host(tmp_path), "6.1.0-57-amd64")
    assert words[:3] == ["memmap=1M$0x17f000000", "ramoops.mem_address=0x17f000000",
                         "ramoops.mem_size=0x100000"]
    assert any("\\$" in n for n in notes)
    (tmp_path / "proc/iomem").write_text(IOMEM.replace("100000000-17fffffff : System RAM\n", ""))
    # no RAM above 4 GiB: low (128 MiB), not at the top below 4 GiB where the boot loader
    # puts the initrd; a crash kernel reservation there moves it past the reservation
    words, _ = proposal(Host(tmp_path), "6.1.0-57-amd64")
    assert words[0] == "memmap=1M$0x8000000"
    (tmp_path / "proc/iomem").write_text(IOMEM.replace("100000000-17fffffff : System RAM\n", "")
                                         .replace("60000000-6fffffff", "07000000-08ffffff"))
    assert proposal(Host(tmp_path), "6.1.0-57-amd64")[0][0] == "memmap=1M$0x9000000"
    words, notes = proposal(Host(tmp_path), "6.12.1", "aarch64")
    assert words[:2] == ["reserve_mem=1M:4096:kdump_oops", "ramoops.mem_name=kdump_oops"]
    assert "cannot find it by name" in notes[0]
    assert proposal(Host(tmp_path), "6.1.0", "aarch64")[0] == []
    (tmp_path / "proc/iomem").write_text("00000000-00000000 : System RAM\n")
    words, notes = proposal(Host(tmp_path), "6.1.0")
    assert words == [] and "root" in notes[0]
    (tmp_path / "proc/iomem").write_text(IOMEM)
    r = CliRunner().invoke(main, ["pstore", "setup", "--root", str(tmp_path),
                                  "--kernel-release", "6.12.0"])
    assert r.exit_code == 0, r.output
    assert "add to the kernel command line: " in r.output or "cannot pick" in r.output


def test_post_notifiers_warning(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("root=/dev/sda1 quiet\n")
    assert post_notifiers_warning(Host(tmp_path)) is None
    (tmp_path / "proc/cmdline").write_text("root=/dev/sda1 crash_kexec_post_notifiers\n")
    assert "less reliable" in (post_notifiers_warning(Host(tmp_path)) or "")
    (tmp_path / "proc/cmdline").write_text("x\n")
    p = tmp_path / "sys/module/kernel/parameters"
    p.mkdir(parents=True)
    (p / "crash_kexec_post_notifiers").write_text("Y\n")
    assert post_notifiers_warning(Host(tmp_path)) is not None


def test_pstore_names() -> None:
    assert pstore._NAME.match("dmesg-efi_pstore-1234567890.enc.z")
    assert not pstore._NAME.match("../dmesg-ramoops-0")
