"""Where the shipped data folders are found: package data under mkkdumprd/data/.

mkkdumprd/data/README.md says what each folder holds. They ship in the wheel as package data
(pyproject.toml, [tool.setuptools.package-data]) and are read from the installed package, a
checkout or an editable install alike, beside this module: for a package imported from
files that is the folder importlib.resources.files() names, without the ~5 ms its import
costs (it imports tempfile, shutil, zipfile), which an up-to-date build would pay for one
path. A zip import is not supported: the builder hands these folders to code that needs
real paths (jinja2's loader, the hooks' importer, the freshness check's mtimes).
"""

from pathlib import Path

from mkkdumprd.errors import ShippedDataError

DATA_DIRS = ("modules.d", "templates", "arch", "packaging")


def data_dir(name: str) -> Path:
    """Return the folder `name` ("modules.d", "templates", "arch" or "packaging")."""
    if name not in DATA_DIRS:
        raise ValueError(f"no shipped data folder {name!r} (known: {', '.join(DATA_DIRS)})")
    folder = Path(__file__).parent / "data" / name
    if not folder.is_dir():
        raise ShippedDataError(f"{folder}: the shipped data folder {name} is missing")
    return folder
