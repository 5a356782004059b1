"""--real-target's confirmation, its test folder name and the ssh commands that check,
read back and remove that folder; the relay of the stand-in's login check (rebuild.py).
No command here reaches a network: the runner is a fake that records argv."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Ran
from mkkdumprd.network.ssh_command import SshTarget
from mkkdumprd.vmtest import rebuild
from mkkdumprd.vmtest.real_target import (
    TEST_DIR,
    RealSshTarget,
    RemoteCommands,
    confirm,
    folder_name,
    folder_path,
    is_loopback,
)

NOW = datetime(2026, 12, 3, 17, 46, 0, tzinfo=UTC)


# ---- confirmation ----------------------------------------------------------------------

def _never(prompt: str) -> bool:
    raise AssertionError(f"asked {prompt!r}")


def test_yes_goes_on_without_asking() -> None:
    confirm("writes to x", yes=True, interactive=False, ask=_never)
    confirm("writes to x", yes=True, interactive=True, ask=_never)


def test_no_terminal_and_no_yes_is_refused() -> None:
    with pytest.raises(UsageError, match=r"without --yes .*writes to x"):
        confirm("writes to x", yes=False, interactive=False, ask=_never)


def test_terminal_asks_and_a_no_stops_everything() -> None:
    asked: list[str] = []

    def answer(value: bool):  # type: ignore[no-untyped-def]
        def ask(prompt: str) -> bool:
            asked.append(prompt)
            return value
        return ask

    confirm("writes to x", yes=False, interactive=True, ask=answer(True))
    with pytest.raises(OperationError, match="nothing was sent"):
        confirm("writes to x", yes=False, interactive=True, ask=answer(False))
    assert asked == ["writes to x\nContinue?"] * 2


# ---- the folder ------------------------------------------------------------------------

def test_folder_name_is_utc_time_and_random() -> None:
    assert folder_name(NOW, "0a1b2c3d") == "mkkdumprd-test-20261203T174600Z-0a1b2c3d"
    a, b = folder_name(NOW), folder_name(NOW)
    assert a != b and TEST_DIR.fullmatch(a) and TEST_DIR.fullmatch(b)
    with pytest.raises(ValueError):
        folder_name(NOW, "../../x")


def test_folder_goes_below_the_configured_path() -> None:
    name = folder_name(NOW, "0a1b2c3d")
    assert folder_path("/var/crash", name) == f"/var/crash/{name}"
    assert folder_path("/var/crash/", name) == f"/var/crash/{name}"
    assert folder_path("", name) == f"/{name}"
    with pytest.raises(ValueError):
        folder_path("/var/crash", "..")


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.1.2.3", True),
                                       ("::1", True), ("localhost", True),
                                       ("10.0.2.2", False), ("dump.example.com", False)])
def test_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


# ---- the ssh commands ------------------------------------------------------------------

CMDS = RemoteCommands(SshTarget("root", "127.0.0.1"), "/root/.ssh/kdump_id",
                      "/root/.ssh/known_hosts")
FOLDER = "/var/crash dir/mkkdumprd-test-20261203T174600Z-0a1b2c3d"


def test_remove_is_rm_rf_of_the_quoted_test_folder_only() -> None:
    argv = CMDS.remove(FOLDER)
    assert argv[:2] == ["ssh", "-i"] and argv[-2] == "root@127.0.0.1"
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert argv[-1] == ("rm -rf -- '/var/crash dir/mkkdumprd-test-20261203T174600Z-0a1b2c3d'")
    for bad in ("/var/crash", "/", "/var/crash/mkkdumprd-test-x", "/a/mkkdumprd-test-2026"):
        with pytest.raises(ValueError, match="not a mkkdumprd-test folder"):
            CMDS.remove(bad)


def test_check_list_fetch_commands() -> None:
    assert CMDS.absent(FOLDER)[-1] == f"test '!' -e '{FOLDER}'"
    assert CMDS.listing(FOLDER)[-1] == f"ls -1 -- '{FOLDER}'"
    assert CMDS.fetch("/x/vmcore.flat")[-1] == "cat -- /x/vmcore.flat"


class FakeServer:
    """Records every argv; answers by the remote command's first word."""

    def __init__(self, rc: dict[str, int], listing: str = "") -> None:
        self.rc = rc
        self.listing = listing
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], timeout: float | None) -> Ran:
        self.calls.append(list(argv))
        word = argv[-1].split()[0]
        return Ran(self.rc.get(word, 0), self.listing if word == "ls" else "",
                   "boom" if self.rc.get(word, 0) else "")

    def fetch(self, argv: Sequence[str], out: Path) -> int:
        self.calls.append(list(argv))
        return self.rc.get("cat", 0)


def _real(server: FakeServer) -> RealSshTarget:
    return RealSshTarget("root@127.0.0.1", FOLDER, CMDS, None, "path a -> b", (), (), False,
                         run=server.run, fetch=server.fetch)


def test_an_existing_folder_stops_the_test_before_anything_is_written() -> None:
    srv = FakeServer({"test": 1})
    with pytest.raises(OperationError, match="already exists"):
        _real(srv).check_absent()
    assert len(srv.calls) == 1


def test_close_removes_the_folder_and_says_so() -> None:
    srv = FakeServer({})
    assert _real(srv).close() == f"removed {FOLDER} from root@127.0.0.1"
    assert srv.calls[-1][-1].startswith("rm -rf -- ")
    failed = FakeServer({"rm": 255})
    real = _real(failed)
    note = real.close()
    assert note is not None and "COULD NOT REMOVE" in note and real.removed is False


def test_read_back_takes_the_dump_folder_and_fails_without_one(tmp_path: Path) -> None:
    srv = FakeServer({"cat": 1}, listing="junk\n10.0.2.15-2026-12-03-17:46:01\n")
    with pytest.raises(OperationError, match=r"no complete vmcore\.flat"):
        _real(srv).read_back(tmp_path / "vmcore")
    assert srv.calls[-1][-1] == f"cat -- '{FOLDER}/10.0.2.15-2026-12-03-17:46:01/vmcore.flat'"
    with pytest.raises(OperationError, match="no dump directory"):
        _real(FakeServer({}, listing="junk\n")).read_back(tmp_path / "vmcore")


# ---- the relayed login check of a rebuilt image ----------------------------------------

RELAY = rebuild.Relay("10.0.2.100", 40022)


def test_login_check_goes_to_the_relay_port_with_the_guest_name_as_host_key_alias() -> None:
    argv = ["ssh", "-i", "k", "-o", "BatchMode=yes", "-p", "22", "root@10.0.2.100", "true"]
    assert rebuild.relay_argv(argv, RELAY) == [
        "ssh", "-o", "HostKeyAlias=10.0.2.100", "-i", "k", "-o", "BatchMode=yes",
        "-p", "40022", "root@127.0.0.1", "true"]


@pytest.mark.parametrize("argv", [
    ["ssh", "-p", "22", "root@192.0.2.7", "true"],       # another destination
    ["scp", "-p", "22", "root@10.0.2.100", "true"],      # not ssh
    ["ssh", "-p", "2222", "root@10.0.2.100", "true"],    # another port
    ["ssh", "root@10.0.2.100", "true"],                  # no port
])
def test_anything_else_is_refused(argv: list[str]) -> None:
    with pytest.raises(OperationError, match="only the ssh login"):
        rebuild.relay_argv(argv, RELAY)


def test_substitution_says_what_changed() -> None:
    sub = rebuild.Substitution(server="root@10.0.2.100", path="/w/ssh-dumps",
                               sshkey="/w/client", known_hosts="10.0.2.100 ssh-ed25519 AAAA\n")
    text = sub.describe("kdump@192.0.2.7", "/var/crash")
    assert text == ("destination kdump@192.0.2.7 -> root@10.0.2.100; path /var/crash -> "
                    "/w/ssh-dumps; sshkey -> /w/client; known host key -> ssh-ed25519 "
                    "(that server's); every other setting as configured")
    assert rebuild.Substitution(path="/var/crash/t").describe("u@h", "/var/crash") == (
        "path /var/crash -> /var/crash/t; every other setting as configured")
