"""Where the shipped data folders (modules.d, templates, arch, packaging) are found.

An installed wheel carries them under mkkdumprd/data/ (see setup.py); a checkout or an
editable install has them at the top of the tree, beside the package.
"""

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder `name` ("modules.d", "templates", "arch" or "packaging")."""
    for candidate in (_PKG / "data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mkkdumprd data folder {name!r} is missing from {_PKG}")
