"""Firmware files the closure's modules ask for (`firmware=` in their `.modinfo`).

Search order is the kernel's: /lib/firmware/updates before /lib/firmware. For each name
the plain file is preferred, then `.zst`, then `.xz` (the kernel's firmware loader,
CONFIG_FW_LOADER_COMPRESS, tries exactly those suffixes). Compressed firmware is copied
as it is, not decompressed: the loader decodes it, and a file compressed by the
distribution stays byte-identical with the host. Symlinks are kept as symlinks and their
targets added too, since linux-firmware uses links between firmware names.
Names with globs (some drivers list `foo/*.bin`) are expanded against the directory.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Sequence
from pathlib import PurePosixPath

from mkkdumprd.host import Host
from mkkdumprd.image.spec import Entry, file_entry, symlink_entry
from mkkdumprd.kmod.closure import ModuleClosure

DEFAULT_FW_DIRS: tuple[str, ...] = ("/lib/firmware/updates", "/lib/firmware")
_SUFFIXES = ("", ".zst", ".xz")
_MAX_LINKS = 16


def firmware_entries(closure: ModuleClosure, view: Host, *,
                     fw_dirs: Sequence[str] = DEFAULT_FW_DIRS
                     ) -> tuple[list[Entry], list[str]]:
    entries: dict[PurePosixPath, Entry] = {}
    warnings: list[str] = []
    for mod in closure.modules:
        for name in mod.firmware:
            found = _find(view, name, fw_dirs)
            if not found:
                warnings.append(
                    f"module {mod.name} wants firmware {name}, not found under "
                    f"{' or '.join(fw_dirs)}")
                continue
            for path in found:
                _add(view, path, f"firmware for {mod.name}", entries)
    return list(entries.values()), warnings


def _find(view: Host, name: str, fw_dirs: Sequence[str]) -> list[str]:
    for d in fw_dirs:
        if any(c in name for c in "*?["):
            parent, _, pattern = f"{d}/{name}".rpartition("/")
            hits = [f"{parent}/{x}" for x in view.listdir(parent)
                    if fnmatch.fnmatchcase(x, pattern)]
            hits = [h for h in hits if view.is_file(h)]
            if hits:
                return hits
            continue
        for suffix in _SUFFIXES:
            cand = f"{d}/{name}{suffix}"
            if view.is_file(cand):
                return [cand]
    return []


def _add(view: Host, path: str, reason: str,
         entries: dict[PurePosixPath, Entry]) -> None:
    """`path` (a file or a chain of symlinks inside the view) and what it points to."""
    current = PurePosixPath(path)
    for _ in range(_MAX_LINKS):
        if current in entries:
            return
        host = view.path(view.resolve(current.parent)) / current.name
        if host.is_symlink():
            target = os.readlink(host)
            entries[current] = symlink_entry(str(current), target, reason)
            # Image paths stay logical (/lib/firmware/...) even where /lib is a link on
            # the host: the kernel loader looks under /lib/firmware in the image.
            current = PurePosixPath(posixpath.normpath(current.parent / target))
            continue
        real = view.path(view.resolve(current))
        entries[current] = file_entry(str(current), real, reason, mode=0o644)
        return
