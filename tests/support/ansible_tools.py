"""Ansible for the collection's tests: the commands (Debian's ansible and ansible-lint
packages, which dev/setup installs; ansible carries community.general's chroot connection
plugin), the collection placed where ansible finds it, and a mkkdumprd wrapper that runs
this checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"\s+skipped=(\d+)", re.MULTILINE)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing (dev/setup installs Debian's ansible and ansible-lint)")
    return path


def collections_path(tmp: Path) -> Path:
    """A collections directory holding this checkout's collection as mkkdumprd.kdump."""
    top = tmp / "collections"
    (top / "ansible_collections/mkkdumprd").mkdir(parents=True)
    shutil.copytree(COLLECTION, top / "ansible_collections/mkkdumprd/kdump")
    return top


def environment(collections: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATHS": str(collections),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_ROLES_PATH": str(collections / "ansible_collections/mkkdumprd/kdump/roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(collections.parent / "ansible-tmp"),
        "ANSIBLE_HOME": str(collections.parent / "ansible-home"),
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    })
    return env


def mkkdumprd_wrapper(tmp: Path) -> Path:
    """An executable that runs this checkout's mkkdumprd with the test's python."""
    exe = tmp / "mkkdumprd"
    exe.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m mkkdumprd \"$@\"\n")
    exe.chmod(0o755)
    return exe


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host → ok, changed, unreachable, failed, skipped."""
    keys = ("ok", "changed", "unreachable", "failed", "skipped")
    return {m.group(1): dict(zip(keys, map(int, m.groups()[1:]), strict=True))
            for m in RECAP.finditer(output)}


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
