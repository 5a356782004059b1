"""The capture image's memstat stage (templates/memstat.sh.j2) run in real shells against a
fake /proc/meminfo and /proc/cmdline: idle without kdump.memstat, and with it the line
`mkkdumprd test --vm` parses, whose minimum is the least MemAvailable the sampler saw."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mkkdumprd.assemble.templates import environment, render, taint
from mkkdumprd.image import layout
from mkkdumprd.resources import data_dir
from mkkdumprd.vmtest import report

SHELLS = [s for s in ("/bin/sh", "/bin/busybox") if Path(s).exists()]


def _meminfo(avail_kb: int) -> str:
    return f"MemTotal:         120000 kB\nMemFree:           9 kB\nMemAvailable:   {avail_kb} kB\n"


def _stage(tmp_path: Path) -> Path:
    paths = {k: str(tmp_path) + v for k, v in layout.TEMPLATE_PATHS.items()}
    text = render(environment([data_dir("templates")]), "memstat.sh.j2",
                  {"paths": taint(paths)})
    f = tmp_path / "memstat.sh"
    f.write_text(text)
    for p in (layout.CMDLINE, layout.MEMINFO, layout.MEMSTAT_FILE):
        (tmp_path / p.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    return f


def _run(shell: str, stage: Path, script: str) -> str:
    argv = [shell, "sh", "-c", script] if shell.endswith("busybox") else [shell, "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True,
                          env={"PATH": "/usr/bin:/bin", "STAGE": str(stage)}).stdout


PRELUDE = 'kinfo() { echo "kdump: $*"; }\n. "$STAGE"\n'


@pytest.mark.parametrize("shell", SHELLS)
def test_idle_without_the_word(tmp_path: Path, shell: str) -> None:
    stage = _stage(tmp_path)
    (tmp_path / "proc/cmdline").write_text("console=ttyS0 kdump.memstatx\n")
    (tmp_path / "proc/meminfo").write_text(_meminfo(50000))
    out = _run(shell, stage, PRELUDE + 'echo "pid=[$KDUMP_MEMSTAT_PID]"\nkdump_memstat_report\n')
    assert out == "pid=[]\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_reports_the_least_available_seen(tmp_path: Path, shell: str) -> None:
    """The sampler sees 50000 kB available, then the flow frees memory (90000 kB) before
    the final action: the report keeps the minimum."""
    stage = _stage(tmp_path)
    (tmp_path / "proc/cmdline").write_text("console=ttyS0 kdump.memstat panic=-1\n")
    meminfo = tmp_path / "proc/meminfo"
    meminfo.write_text(_meminfo(50000))
    script = PRELUDE + (
        f'while [ ! -s {tmp_path}/run/kdump-memstat ]; do sleep 0.1; done\n'
        f'cat {meminfo}.later >{meminfo}\n'
        "kdump_memstat_report\n")
    Path(f"{meminfo}.later").write_text(_meminfo(90000))
    out = _run(shell, stage, script)
    m = report.capture_memory(out)
    assert m is not None, out
    assert m.total == 120000 * 1024 and m.peak_used == (120000 - 50000) * 1024, out
    assert m.samples >= 2


def test_shellcheck_passes(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    stage = _stage(tmp_path)
    r = subprocess.run(["shellcheck", "-s", "sh", "-e", "SC2034", str(stage)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
