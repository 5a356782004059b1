"""The service lock with two real processes: the second waits, says so, then proceeds."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.lifecycle import lock
from mkkdumprd.lifecycle.locations import LOCK_FILE

REPO = Path(__file__).resolve().parents[2]

# Takes the lock, appends "<name> acquired" to LOG, then holds it until stdin closes.
HOLDER = """
import sys
from pathlib import Path
from mkkdumprd.host import Host
from mkkdumprd.lifecycle.lock import service_lock
root, name, log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
def notify(msg):
    print("WAIT " + msg, file=sys.stderr, flush=True)
with service_lock(Host(root), notify):
    with log.open("a") as f:
        f.write(name + " acquired\\n")
    print("locked", flush=True)
    sys.stdin.read()
    with log.open("a") as f:
        f.write(name + " released\\n")
"""


def _spawn(root: Path, name: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(root), name, str(log)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


def _ready(stream: object) -> bool:
    return bool(select.select([stream], [], [], 0)[0])


def test_second_caller_waits_then_proceeds(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    log = tmp_path / "log"
    first = _spawn(tmp_path, "first", log)
    second: subprocess.Popen[str] | None = None
    try:
        assert first.stdout is not None and first.stdin is not None
        assert first.stdout.readline() == "locked\n"
        second = _spawn(tmp_path, "second", log)
        assert second.stderr is not None and second.stdout is not None
        # Blocks until the second process gives up waiting quietly and says why it waits.
        wait_line = second.stderr.readline()
        assert wait_line.startswith(f"WAIT waiting for pid {first.pid} ({sys.executable} -c "
                                    ), wait_line
        assert f"to release {tmp_path / 'run/mkkdumprd/lock'}" in wait_line, wait_line
        # Still waiting: it has neither printed nor logged anything.
        assert second.poll() is None and not _ready(second.stdout)
        assert log.read_text() == "first acquired\n"
        first.stdin.close()
        assert first.wait() == 0
        assert second.stdout.readline() == "locked\n"
        second.communicate("")
        assert second.returncode == 0
        assert log.read_text().splitlines() == [
            "first acquired", "first released", "second acquired", "second released"]
        # The lock file stays (unlinking it would let a third caller lock another inode).
        assert (tmp_path / "run/mkkdumprd/lock").read_text() == f"{second.pid}\n"
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_uncontended_lock_is_quiet_and_reentrant_in_sequence(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    said: list[str] = []
    host = Host(tmp_path)
    for _ in range(2):
        with lock.service_lock(host, said.append) as path:
            assert path == tmp_path / str(LOCK_FILE).lstrip("/")
            assert path.read_text() == f"{os.getpid()}\n"
    assert said == []


def test_directory_is_created_private(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with lock.service_lock(Host(tmp_path), print) as path:
        assert path == tmp_path / "run/mkkdumprd/lock"
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        assert (path.stat().st_mode & 0o777) == 0o600


def test_no_run_directory_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match=r"cannot create .*run/mkkdumprd: .*need root"), \
            lock.service_lock(Host(tmp_path), print):
        pass


def test_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "run/mkkdumprd").mkdir(parents=True, mode=0o700)
    (tmp_path / "run/mkkdumprd/lock").symlink_to(victim)
    with pytest.raises(OperationError, match=r"cannot open the lock file .*lock"), \
            lock.service_lock(Host(tmp_path), print):
        pass
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_directory_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    d = tmp_path / "run/mkkdumprd"
    d.mkdir(parents=True)
    d.chmod(mode)
    with pytest.raises(OperationError, match=r"writable by nobody else"), \
            lock.service_lock(Host(tmp_path), print):
        pass
    assert not (d / "lock").exists()


def test_directory_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "run/mkkdumprd").symlink_to(elsewhere)
    with pytest.raises(OperationError, match="is not a directory"), \
            lock.service_lock(Host(tmp_path), print):
        pass
    assert list(elsewhere.iterdir()) == []


def test_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")  # pragma: no cover
    d = tmp_path / "run/mkkdumprd"
    d.mkdir(parents=True, mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(OperationError, match="owned by uid 65534"), \
            lock.service_lock(Host(tmp_path), print):
        pass


def test_fifo_lock_file_is_refused_without_hanging(tmp_path: Path) -> None:
    (tmp_path / "run/mkkdumprd").mkdir(parents=True, mode=0o700)
    os.mkfifo(tmp_path / "run/mkkdumprd/lock")
    with pytest.raises(OperationError, match="not a regular file"), \
            lock.service_lock(Host(tmp_path), print):
        pass


def test_wait_is_bounded_and_names_the_holder(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    log = tmp_path / "log"
    first = _spawn(tmp_path, "first", log)
    try:
        assert first.stdout is not None
        assert first.stdout.readline() == "locked\n"
        said: list[str] = []
        with pytest.raises(OperationError) as info, \
                lock.service_lock(Host(tmp_path), said.append, notice_after=0.0,
                                  wait_limit=0.2):
            pass
        msg = str(info.value)
        assert msg.startswith(f"pid {first.pid} ({sys.executable} -c "), msg
        assert "has held" in msg and "run/mkkdumprd/lock" in msg and "\n" not in msg
        assert len(said) == 1 and said[0].startswith(f"waiting for pid {first.pid}")
        # The holder's pid is still in the file: the loser wrote nothing.
        assert (tmp_path / "run/mkkdumprd/lock").read_text() == f"{first.pid}\n"
    finally:
        first.kill()
        first.wait()
