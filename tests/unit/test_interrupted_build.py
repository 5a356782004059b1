"""`mkkdumprd build` interrupted by real signals leaves no image-sized temp file (issue 14
item 9): SIGTERM/SIGHUP/SIGINT clean up at once, SIGKILL's leftover goes at the next build.

The build is slowed with xz so that the temp file exists for a while; the test signals as
soon as it appears.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.debian_kernel import Kernel
from tests.support.signals import default_sigint

REPO = Path(__file__).resolve().parents[2]
CONF = "ext4 UUID=12345678-1234-1234-1234-123456789abc\n"


def _temps(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if p.name.endswith(".tmp")]


def _build(kernel: Kernel, d: Path, *extra: str) -> subprocess.Popen[str]:
    conf = d / "b.conf"
    conf.write_text(CONF)
    return subprocess.Popen(
        [sys.executable, "-m", "mkkdumprd", "build", "--kver", kernel.kver, "--kmoddir",
         str(kernel.kmoddir), "--no-hostonly", "--add-drivers", "ext4", "-c", str(conf),
         "-o", str(d / "out.img"), "--compress", "xz", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def _signal_when_writing(p: subprocess.Popen[str], d: Path, sig: int) -> tuple[str, str]:
    deadline = time.monotonic() + 120
    while not _temps(d):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            pytest.fail(f"the build ended (rc {p.returncode}) before its temp file appeared")
        time.sleep(0.005)
    p.send_signal(sig)
    return p.communicate()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM),
                                           (signal.SIGHUP, 128 + signal.SIGHUP),
                                           (signal.SIGINT, 1)])      # click: "Aborted!"
def test_signal_mid_write_leaves_nothing(kernel: Kernel, tmp_path: Path, sig: int,
                                         code: int) -> None:
    p = _build(kernel, tmp_path)
    _, err = _signal_when_writing(p, tmp_path, sig)
    assert p.returncode == code, err
    assert "Traceback" not in err, err
    assert _temps(tmp_path) == [] and not (tmp_path / "out.img").exists()


def test_sigkill_leftover_is_swept_by_the_next_build(kernel: Kernel, tmp_path: Path) -> None:
    p = _build(kernel, tmp_path)
    _signal_when_writing(p, tmp_path, signal.SIGKILL)
    assert p.returncode == -signal.SIGKILL
    [left] = _temps(tmp_path)
    assert left.name.startswith(f".out.img.mkkdumprd-{p.pid}.")
    again = _build(kernel, tmp_path)
    _, err = again.communicate()
    assert again.returncode == 0, err
    assert _temps(tmp_path) == [] and (tmp_path / "out.img").stat().st_size > 0
