"""What a build is asked to make: BuildRequest (also importable from assemble/builder.py).

Its own module, light to import: `mkkdumprd build` builds one before it knows whether the
image is up to date, and the up-to-date check must not pay for importing the builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mkkdumprd.image.compression import Compression

if TYPE_CHECKING:
    from mkkdumprd.config.model import KdumpConfig
    from mkkdumprd.host import Host

DEFAULT_TIMEOUT = 90


@dataclass(frozen=True)
class BuildRequest:
    """Everything one image build is asked for: configuration, kernel, roots, output."""

    config: KdumpConfig
    kver: str
    kmoddir: Path
    # A cross build reads two roots: the one the image's files come from, and the machine
    # the image is for. A host build passes the same Host twice.
    sysroot: Host    # binaries, libraries, firmware, module.toml files (a --sysroot or /)
    machine: Host    # /proc, /sys, /dev, /etc: devices, mounts, routes, keys of the target machine
    arch: str
    hostonly: bool = True
    add_drivers: tuple[str, ...] = ()
    omit_drivers: tuple[str, ...] = ()
    # modules.d entries asked for by name (dracut's --add), e.g. lvm, mdraid, crypt
    add_modules: tuple[str, ...] = ()
    compression: Compression = Compression.ZSTD
    level: int | None = None
    output: Path | None = None
    timeout: int = DEFAULT_TIMEOUT
    modules_dir: Path | None = None
    templates_dir: Path | None = None
    source_date_epoch: int | None = None
    # The capture network in dracut's ip= syntax (network targets); None: from the host's
    # route on host-only builds, DHCP otherwise.
    ip: str | None = None
