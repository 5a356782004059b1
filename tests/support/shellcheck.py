"""shellcheck over rendered capture scripts (Debian package `shellcheck`; dev/setup installs it).

Every script the test suite renders goes through `assert_clean`. The scripts source each
other by absolute path; rendered under a test root those paths exist, and `-x` follows them,
so variables set in one stage and read in another are known where the sources are literal.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

_CHECKED: set[str] = set()


def assert_clean(files: Iterable[Path], root: Path | None = None,
                 exclude: Iterable[str] = ()) -> None:
    """shellcheck (POSIX sh, all severities) reports nothing for any of `files` (but the
    codes in `exclude`).

    Scripts already checked with the same text (the test root replaced) are not checked
    again: the flow tests render the same scripts once per shell.
    """
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck is not installed (Debian package shellcheck; see dev/setup)")
    todo: list[Path] = []
    keys: list[str] = []
    for f in files:
        text = f.read_text()
        if root is not None:
            text = text.replace(str(root), "/ROOT")
        key = hashlib.sha256(f"{sorted(exclude)}{text}".encode()).hexdigest()
        if key not in _CHECKED:
            todo.append(f)
            keys.append(key)
    if not todo:
        return
    skip = ["-e", ",".join(exclude)] if exclude else []
    r = subprocess.run([exe, "--norc", "-x", "-s", "sh", "-f", "gcc", *skip, *map(str, todo)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"shellcheck:\n{r.stdout}{r.stderr}"
    _CHECKED.update(keys)
