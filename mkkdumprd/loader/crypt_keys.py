"""LUKS volume keys for the capture kernel (CONFIG_CRASH_DM_CRYPT, Linux 6.16+).

Before kexec_file_load, one configfs item per LUKS volume under the dump target names a
`logon` key in the loader's keyring (`kdump-cryptsetup:vk-<LUKS UUID>`, kdump-utils'
description); during the load the kernel copies those keys into the crash reservation, and
the capture image restores them into its keyring for `cryptsetup --volume-key-keyring`.
The items are removed after the load either way (the kernel keeps its copy). The key must
already be in the keyring, put there when the volume was unlocked, e.g. with
`cryptsetup open --link-vk-to-keyring=@u::%logon:kdump-cryptsetup:vk-UUID` (or crypttab's
`link-volume-key=`); the kernel refuses the load with ENOKEY otherwise.

Which volumes: those a host-only build recorded in the image's manifest; for an image
built with `--add crypt` (no layout recorded), every LUKS volume open on this machine. A
loader that cannot read the manifest (no image reader: a bare python3) treats the image
like an `--add crypt` one where the kernel can take keys, and says so on stderr.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host

CONFIG_DIR = "/sys/kernel/config/crash_dm_crypt_keys"
KEY_PREFIX = "kdump-cryptsetup:vk-"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CRYPT_UUID = re.compile(r"^CRYPT-LUKS[12]-([0-9a-f]{32})-")


def volumes_for(host: Host, manifest: dict[str, Any] | None) -> list[str]:
    """The LUKS UUIDs whose keys the capture image needs (empty: none, no crypt module)."""
    modules = manifest.get("modules") if manifest else None
    if not isinstance(modules, list) or "crypt" not in modules:
        return []
    config = manifest.get("config") if manifest else None
    target = config.get("target") if isinstance(config, dict) else None
    recorded = target.get("luks") if isinstance(target, dict) else None
    if isinstance(recorded, list):
        return [u for u in recorded if isinstance(u, str) and _UUID.match(u)]
    out = []
    for name in host.listdir("/sys/class/block"):
        m = _CRYPT_UUID.match((host.read_optional(f"/sys/class/block/{name}/dm/uuid")
                               or "").strip())
        if m:
            h = m.group(1)
            out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return sorted(set(out))


def open_volumes(host: Host) -> list[str]:
    """The LUKS UUIDs of the volumes open on this machine (device-mapper CRYPT-LUKS*)."""
    return volumes_for(host, {"modules": ["crypt"]})


def unread_manifest(host: Host, image: str, why: str) -> dict[str, Any] | None:
    """The manifest to go by when `image`'s cannot be read (`why`): with LUKS volumes open,
    every one's key where the kernel takes keys (an --add crypt image's rule), else none;
    either way a stderr line, since a capture kernel without keys cannot open them."""
    luks = open_volumes(host)
    if not luks:
        return None
    names = ", ".join(KEY_PREFIX + u for u in luks)
    if host.path(CONFIG_DIR).is_dir():
        print(f"mkkdumprd: cannot read the manifest of {image} ({why}): handing over the "
              f"keys of every open LUKS volume ({names})", file=sys.stderr)
        return {"modules": ["crypt"]}
    print(f"mkkdumprd: cannot read the manifest of {image} ({why}) and this kernel has no "
          f"{CONFIG_DIR}: if the image opens LUKS volumes, its capture kernel gets no key "
          f"({names})", file=sys.stderr)
    return None


@contextmanager
def handed_over(host: Host, uuids: list[str]) -> Iterator[None]:
    """configfs items for `uuids` while the body (the load) runs, removed afterwards."""
    if not uuids:
        yield
        return
    base = host.path(CONFIG_DIR)
    if not base.is_dir():
        raise OperationError(
            f"the capture image opens LUKS volumes, but {CONFIG_DIR} does not exist: the "
            f"running kernel lacks CONFIG_CRASH_DM_CRYPT or configfs is not mounted "
            f"(modprobe configfs; mount -t configfs none /sys/kernel/config)")
    made: list[Path] = []
    try:
        for u in uuids:
            item = base / u
            try:
                item.mkdir()
                made.append(item)
            except FileExistsError:
                pass
            except OSError as exc:
                raise OperationError(f"cannot create {item}: {exc.strerror}") from None
            try:
                (item / "description").write_text(KEY_PREFIX + u)
            except OSError as exc:
                raise OperationError(f"cannot write {item}/description: {exc.strerror}") \
                    from None
        yield
    finally:
        for item in made:
            # configfs removes an item with its attributes; a plain directory (a test's
            # tree) needs the file gone first. The kernel keeps its copy of the key; a
            # stale item would only name one.
            with contextlib.suppress(OSError):
                if not _rmdir(item):
                    (item / "description").unlink()
                    os.rmdir(item)


def _rmdir(item: Path) -> bool:
    try:
        os.rmdir(item)
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        return False
    return True


def load_error(exc: OSError, uuids: list[str]) -> str | None:
    """A clearer message for the load failing on a missing key, else None."""
    if not uuids or exc.errno not in (errno.ENOKEY, errno.EKEYEXPIRED, errno.EKEYREVOKED):
        return None
    names = ", ".join(KEY_PREFIX + u for u in uuids)
    return (f"the kernel found no usable logon key for the LUKS volume(s) under the dump "
            f"target ({names}); unlock with `cryptsetup open --link-vk-to-keyring="
            f"@u::%logon:{KEY_PREFIX}UUID ...` (or crypttab's link-volume-key=) and load again")
