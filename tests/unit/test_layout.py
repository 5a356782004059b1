"""Where things live: the shipped data folders are where resources.py and their README say,
and test modules share helpers through tests/support/ and conftest, not through each other."""

from __future__ import annotations

import ast
from pathlib import Path

from mkkdumprd.resources import DATA_DIRS, data_dir

REPO = Path(__file__).resolve().parents[2]


def test_every_data_folder_exists_and_is_described() -> None:
    readme = (REPO / "mkkdumprd" / "data" / "README.md").read_text()
    on_disk = {p.name for p in (REPO / "mkkdumprd" / "data").iterdir() if p.is_dir()
               and p.name != "__pycache__"}
    assert on_disk == set(DATA_DIRS)
    for name in DATA_DIRS:
        assert data_dir(name) == REPO / "mkkdumprd" / "data" / name
        assert f"| `{name}/` |" in readme, name


def test_test_modules_do_not_import_each_other() -> None:
    offenders = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                last = node.module.rsplit(".", 1)[-1]
                if node.module.startswith("tests.") and last.startswith("test_"):
                    offenders.append(f"{path.relative_to(REPO)}: from {node.module}")
    assert offenders == []
