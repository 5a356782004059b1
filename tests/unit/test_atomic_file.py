"""atomic_output/atomic_write: the old file or the new one, never a torn one or a temp left."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mkkdumprd.atomic_file import TempFileError, atomic_output, atomic_write
from tests.support.signals import default_sigint


def test_replaces_with_mode(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    atomic_write(p, "new", 0o600)
    assert p.read_text() == "new"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(p) as f:
        f.write(b"half")
        raise RuntimeError("source vanished")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]


def test_missing_directory_is_a_temp_file_error(tmp_path: Path) -> None:
    with pytest.raises(TempFileError) as info:
        atomic_write(tmp_path / "nope" / "f", b"x")
    assert info.value.filename == str(tmp_path / "nope")


# -- interrupted writers (issue 14 item 9): real signals to a child process ---------------

_HOLDER = """
import sys
from pathlib import Path
from mkkdumprd.atomic_file import atomic_output
with atomic_output(Path(sys.argv[1]), 0o600) as f:
    f.write(b"x" * (4 << 20))
    f.flush()
    print("writing", flush=True)
    sys.stdin.read()            # blocks until the test signals (or closes stdin)
"""


def _temps(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def _writer(out: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[2], preexec_fn=default_sigint)
    assert p.stdout is not None and p.stdout.readline() == "writing\n"
    return p


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM),
                                           (signal.SIGHUP, 128 + signal.SIGHUP),
                                           # unhandled KeyboardInterrupt: killed by SIGINT
                                           (signal.SIGINT, -signal.SIGINT)])
def test_signals_remove_the_temp_and_keep_the_old_file(tmp_path: Path, sig: int,
                                                       code: int) -> None:
    out = tmp_path / "image.img"
    out.write_bytes(b"old image")
    p = _writer(out)
    try:
        assert len(_temps(tmp_path)) == 1 and f".mkkdumprd-{p.pid}." in _temps(tmp_path)[0]
        p.send_signal(sig)
        _, err = p.communicate()
        assert p.returncode == code, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert _temps(tmp_path) == []
    assert out.read_bytes() == b"old image"


def test_sigkill_leftovers_are_swept_by_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "image.img"
    p = _writer(out)
    p.kill()
    p.communicate()
    [left] = _temps(tmp_path)
    assert left.startswith(f".image.img.mkkdumprd-{p.pid}.")
    # A live writer's temp, another file's, and a look-alike not of our naming stay.
    live = tmp_path / f".image.img.mkkdumprd-{os.getpid()}.abcd1234.tmp"
    other = tmp_path / f".other.img.mkkdumprd-{p.pid}.abcd1234.tmp"
    foreign = tmp_path / ".image.img.abcd1234.tmp"
    for f in (live, other, foreign):
        f.write_bytes(b"x")
    atomic_write(out, b"new")
    assert out.read_bytes() == b"new"
    assert _temps(tmp_path) == sorted(f.name for f in (live, other, foreign))


def test_a_signal_inside_mkstemp_leaves_no_temp(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """SystemExit (from the SIGTERM/SIGHUP handler) after mkstemp created its file but before
    it returned the name: the file is still removed (test_interrupted_build saw it once)."""
    import tempfile

    real = tempfile.mkstemp

    def interrupted(*a: object, **kw: object) -> tuple[int, str]:
        fd, _name = real(*a, **kw)  # type: ignore[call-overload]
        os.close(fd)
        raise SystemExit(143)

    monkeypatch.setattr(tempfile, "mkstemp", interrupted)
    (tmp_path / ".out.img.mkkdumprd-1.keep.tmp").write_text("another process's")
    with pytest.raises(SystemExit), atomic_output(tmp_path / "out.img"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.img.mkkdumprd-1.keep.tmp"]
