"""The service lock with two real processes: the second waits, says so, then proceeds."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from mkkdumprd.host import HostView
from mkkdumprd.lifecycle import lock
from mkkdumprd.lifecycle.locations import LOCK_FALLBACK, LOCK_FILE

REPO = Path(__file__).resolve().parents[2]

# Takes the lock, appends "<name> acquired" to LOG, then holds it until stdin closes.
HOLDER = """
import sys
from pathlib import Path
from mkkdumprd.host import HostView
from mkkdumprd.lifecycle.lock import service_lock
root, name, log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
def notify(msg):
    print("WAIT " + msg, file=sys.stderr, flush=True)
with service_lock(HostView(root), notify):
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
    (tmp_path / "run/lock").mkdir(parents=True)
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
        assert wait_line.startswith(f"WAIT waiting for pid {first.pid} to release "
                                    f"{tmp_path / 'run/lock/mkkdumprd'}"), wait_line
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
        assert (tmp_path / "run/lock/mkkdumprd").read_text() == f"{second.pid}\n"
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_uncontended_lock_is_quiet_and_reentrant_in_sequence(tmp_path: Path) -> None:
    (tmp_path / "run/lock").mkdir(parents=True)
    said: list[str] = []
    host = HostView(tmp_path)
    for _ in range(2):
        with lock.service_lock(host, said.append) as path:
            assert path == tmp_path / str(LOCK_FILE).lstrip("/")
            assert path.read_text() == f"{os.getpid()}\n"
    assert said == []


def test_falls_back_to_tmp_without_run_lock(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    with lock.service_lock(HostView(tmp_path), print) as path:
        assert path == tmp_path / str(LOCK_FALLBACK).lstrip("/")


def test_unopenable_lock_is_one_sentence(tmp_path: Path) -> None:
    # Neither /run/lock nor /tmp exists in this root.
    from mkkdumprd.errors import OperationError

    with pytest.raises(OperationError, match=r"cannot open the lock file .*mkkdumprd.lock"), \
            lock.service_lock(HostView(tmp_path), print):
        pass
