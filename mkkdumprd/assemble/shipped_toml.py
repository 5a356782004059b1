"""The shipped module.toml files' parse, kept beside the package like Python's bytecode.

Importing tomllib (it compiles its regular expressions at import) and parsing the shipped
modules.d's ~24 module.toml files was ~10 ms of a cold build. What a file parses to depends
only on its bytes (and Python's tomllib), so the parse of each shipped file is kept as JSON,
keyed by the file's sha256, in the `__pycache__` folder of modules.d (or under
`sys.pycache_prefix`), by the rules of assemble/templates.py's TemplateCache: not written
under PYTHONDONTWRITEBYTECODE, only read where the folder cannot be written, used only when
owned by root or the caller and not writable by others. Files elsewhere (`--modules-dir`,
tests) and parses JSON cannot hold exactly (TOML dates and times) are parsed each time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from mkkdumprd.resources import data_dir

_FORMAT = 1


class InvalidToml(ValueError):
    """The text is not TOML (tomllib's message)."""


class _Store:
    def __init__(self) -> None:
        self.root = str(data_dir("modules.d")) + os.sep
        self.entries: dict[str, list[Any]] | None = None   # relpath -> [sha256, parse]
        self.dirty = False

    def file(self) -> Path:
        from importlib.util import cache_from_source

        folder = Path(cache_from_source(str(data_dir("modules.d") / "_.py"))).parent
        tag = f"{sys.implementation.cache_tag}-{_FORMAT}"
        return folder / f"module-toml.{tag}.json"

    def load(self) -> dict[str, list[Any]]:
        if self.entries is None:
            self.entries = {}
            with suppress(OSError, ValueError), open(self.file(), "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022:
                    found = json.load(f)
                    if isinstance(found, dict):
                        self.entries = found
        return self.entries


_STORE: _Store | None = None


def _store() -> _Store:
    global _STORE
    if _STORE is None:
        _STORE = _Store()
    return _STORE


def parse(path: Path, data: bytes) -> dict[str, Any]:
    """tomllib.loads of `data` (the bytes of `path`, UTF-8), from the kept parse when `path`
    is a shipped file whose bytes it was made from. InvalidToml when it is not TOML;
    UnicodeDecodeError when it is not UTF-8."""
    store = _store()
    name = str(path)
    shipped = name.startswith(store.root)
    digest = hashlib.sha256(data).hexdigest() if shipped else ""
    if shipped:
        kept = store.load().get(name[len(store.root):])
        if isinstance(kept, list) and len(kept) == 2 and kept[0] == digest \
                and isinstance(kept[1], dict):
            return kept[1]
    # As Path.read_text reads it (universal newlines), which the loader used before.
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    import tomllib

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidToml(str(exc)) from None
    if shipped:
        try:
            exact = json.loads(json.dumps(raw)) == raw
        except (TypeError, ValueError):  # dates and times: not JSON
            exact = False
        if exact:
            store.load()[name[len(store.root):]] = [digest, raw]
            store.dirty = True
    return raw


def save() -> None:
    """Write the kept parses if this process added one (where Python would write bytecode)."""
    store = _store()
    if not store.dirty or sys.dont_write_bytecode:
        return
    store.dirty = False
    from mkkdumprd.atomic_file import atomic_write

    path = store.file()
    with suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(store.load(), sort_keys=True), 0o644, durable=False)
