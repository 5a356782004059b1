"""`mkkdumprd ls IMAGE [--json] [--why]`: list an initramfs, segment by segment, like lsinitrd."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import click

from mkkdumprd import json_input
from mkkdumprd.errors import UsageError
from mkkdumprd.image.reader import Member, normalise, read_file, read_members
from mkkdumprd.input_file import printable

MANIFEST = "/etc/mkkdumprd/manifest.json"

_TYPE_BITS = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "chardev": stat.S_IFCHR,
    "blockdev": stat.S_IFBLK,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}


def mode_string(m: Member) -> str:
    """`ls -l` style, e.g. "-rwxr-xr-x"."""
    return stat.filemode(_TYPE_BITS.get(m.kind, 0) | m.mode)


def load_reasons(image: Path, members: list[Member]) -> dict[str, str] | None:
    """Image path → reason from the manifest the build stored in the image, or None."""
    if not any(m.path == MANIFEST for m in members):
        return None
    raw = read_file(image, MANIFEST)
    try:
        doc = json_input.loads(raw)
        entries = doc["entries"]
        if not isinstance(entries, dict):
            raise TypeError("entries is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{MANIFEST} in {image} is not a valid mkkdumprd manifest ({exc}); "
            "rebuild the image"
        ) from None
    return {normalise(str(k)): str(v) for k, v in entries.items()}


def _printable(name: str) -> str:
    # A name is data from the image: control characters (ESC sequences, newlines) and bytes
    # that are not UTF-8 are shown as \x.. escapes, never sent to the terminal.
    return printable(name)


def _size_field(m: Member) -> str:
    if m.rdev is not None:
        return f"{m.rdev[0]}, {m.rdev[1]}"
    return str(m.size)


def _as_json(m: Member, reasons: dict[str, str] | None, why: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "segment": m.segment,
        "compression": m.compression,
        "path": m.path,
        "type": m.kind,
        "mode": f"{m.mode:04o}",
        "size": m.size,
        "target": m.target,
    }
    if m.rdev is not None:
        obj["rdev"] = list(m.rdev)
    if why:
        obj["why"] = reasons.get(m.path) if reasons is not None else None
    return obj


def format_table(members: list[Member], reasons: dict[str, str] | None, why: bool) -> str:
    lines: list[str] = []
    width = max((len(_size_field(m)) for m in members), default=1)
    segment = None
    for m in members:
        if m.segment != segment:
            segment = m.segment
            count = sum(1 for x in members if x.segment == segment)
            label = "uncompressed" if m.compression == "none" else m.compression
            if lines:
                lines.append("")
            lines.append(f"segment {segment}: {label} cpio, {count} entries")
        line = (f"{mode_string(m)} {m.uid:>4} {m.gid:>4} {_size_field(m):>{width}}  "
                f"{_printable(m.path)}")
        if m.target is not None:
            line += f" -> {_printable(m.target)}"
        if why and reasons is not None:
            line += f"  # {reasons.get(m.path, '-')}"
        lines.append(line)
    return "\n".join(lines)


@click.command("ls")
@click.argument("image", type=click.Path(path_type=Path, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of entries.")
@click.option("--why", is_flag=True,
              help="Show why each entry is in the image (from its build manifest).")
def ls(image: Path, as_json: bool, why: bool) -> None:
    """List the entries of an initramfs IMAGE, per segment, like lsinitrd.

    Segments (uncompressed early cpio, compressed main archive) are found by magic, so
    images made by dracut and initramfs-tools are listed too.
    """
    members = read_members(image)
    reasons = load_reasons(image, members) if why else None
    if why and reasons is None:
        click.echo(
            f"mkkdumprd: note: {image} has no {MANIFEST} (it was not built by mkkdumprd), "
            "so the reasons for its entries are unknown",
            err=True,
        )
    if as_json:
        click.echo(json.dumps([_as_json(m, reasons, why) for m in members], indent=1))
    else:
        click.echo(format_table(members, reasons, why))


COMMANDS: list[click.Command] = [ls]
