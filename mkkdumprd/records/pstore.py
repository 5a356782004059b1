"""Moving the kernel's pstore records into the crash directories, which frees the space.

/sys/fs/pstore holds `<type>-<backend>-<id>[.enc.z]` files (dmesg-ramoops-0,
console-ramoops-0, pmsg-ramoops-0, dmesg-efi_pstore-N, dmesg-erst-N); each file's mtime is
its record's time, and unlinking it erases the record. Records close in time (COLLECT_WINDOW)
belong to one crash: they go to `<path>/<dir>/pstore/` of the crash directory whose name
is within that window of their first record, else to a new `<path>/<host>-<date>/`. Each
file is copied, fsynced, and only then unlinked, so a failure leaves the record where it
was.

systemd-pstore: mkkdumprd-pstore.service runs Before=systemd-pstore.service, so it moves
the files first; systemd-pstore then finds the directory empty and does nothing (its unit's
ConditionDirectoryNotEmpty). Disabling mkkdumprd-pstore.service lets systemd keep them in
/var/lib/systemd/pstore instead. Either way no file is moved twice.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.input_file import InputFileError, read_input
from mkkdumprd.records.crashes import PSTORE_SUBDIR, dir_name, dir_time

PSTORE = PurePosixPath("/sys/fs/pstore")
COLLECT_WINDOW = 900                # seconds: records this close belong to one crash
RECORD_MAX = 64 << 20
NEW_DIR_HOST = "127.0.0.1"          # as the capture image names local dump directories
_NAME = re.compile(r"(?P<kind>[a-z]+)-(?P<backend>[A-Za-z0-9_]+)-(?P<id>[0-9]+)"
                   r"(?P<enc>\.enc\.z)?\Z")


@dataclass(frozen=True)
class PstoreRecord:
    name: str
    kind: str               # dmesg, console, pmsg, ftrace, mce, ...
    backend: str            # ramoops, efi_pstore, efi, erst, ...
    time: datetime          # the record's time (the file's mtime)


@dataclass(frozen=True)
class Move:
    record: PstoreRecord
    directory: PurePosixPath    # the crash directory
    new: bool                   # the directory is created for it


def list_records(host: Host, pstore: PurePosixPath = PSTORE) -> list[PstoreRecord]:
    """The pstore records, oldest first; other files are left alone."""
    if not host.is_dir(pstore):
        return []
    out: list[PstoreRecord] = []
    for name in host.listdir(pstore):
        m = _NAME.match(name)
        if m is None or not host.is_file(pstore / name) or host.is_symlink(pstore / name):
            continue
        mtime = host.stat(pstore / name).st_mtime
        out.append(PstoreRecord(name, m.group("kind"), m.group("backend"),
                                datetime.fromtimestamp(mtime, UTC)))
    out.sort(key=lambda r: (r.time, r.name))
    return out


def plan_collect(host: Host, records: list[PstoreRecord], crash_root: PurePosixPath,
                 now: datetime) -> list[Move]:
    """Where each record goes. A record dated before 2000 (a backend that keeps no time)
    counts as `now`."""
    existing = {}
    if host.is_dir(crash_root):
        for name in host.listdir(crash_root):
            when = dir_time(name)
            if when is not None and host.is_dir(crash_root / name):
                existing[crash_root / name] = when
    moves: list[Move] = []
    group_start: datetime | None = None
    target: tuple[PurePosixPath, bool] | None = None
    for rec in records:
        when = rec.time if rec.time.year >= 2000 else now
        if group_start is None or (when - group_start).total_seconds() > COLLECT_WINDOW:
            group_start = when
            near = sorted(existing.items(),
                          key=lambda item: abs((item[1] - when).total_seconds()))
            if near and abs((near[0][1] - when).total_seconds()) <= COLLECT_WINDOW:
                target = (near[0][0], False)
            else:
                new = crash_root / dir_name(NEW_DIR_HOST, when)
                target = (new, new not in existing)
                existing[new] = when
        assert target is not None
        moves.append(Move(rec, target[0], target[1]))
    return moves


def _free_name(host: Host, directory: PurePosixPath, name: str) -> PurePosixPath:
    if not host.exists(directory / name):
        return directory / name
    for n in range(1, 1000):
        if not host.exists(directory / f"{name}.{n}"):
            return directory / f"{name}.{n}"
    raise OperationError(f"{directory}: too many files named {name}.N")


def perform(host: Host, moves: list[Move], pstore: PurePosixPath = PSTORE) -> list[str]:
    """Copies each record into its crash directory's pstore/, then erases it from pstore."""
    done: list[str] = []
    for mv in moves:
        src = pstore / mv.record.name
        dest_dir = mv.directory / PSTORE_SUBDIR
        try:
            data = read_input(host.path(src), RECORD_MAX)
        except InputFileError as exc:
            raise OperationError(f"cannot read pstore record {exc}") from None
        try:
            os.makedirs(host.path(dest_dir), mode=0o700, exist_ok=True)
            dest = _free_name(host, dest_dir, mv.record.name)
            atomic_write(host.path(dest), data, 0o600)     # fsynced, then renamed
        except OSError as exc:
            raise OperationError(f"cannot archive pstore record {mv.record.name} into "
                                 f"{dest_dir}: {exc.strerror or exc}") from None
        try:
            os.unlink(host.path(src))
        except OSError as exc:
            raise OperationError(f"archived {mv.record.name} to {dest} but cannot erase it from "
                                 f"{pstore}: {exc.strerror or exc}") from None
        done.append(f"{src} -> {dest}")
    return done
