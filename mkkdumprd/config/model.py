"""The resolved kdump configuration, as frozen data.

Semantics follow Fedora's kdump.conf as documented by kdump.conf(5) and implemented by
kdumpctl in rhkdump/kdump-utils (https://github.com/rhkdump/kdump-utils): one dump target at
most (mkkdumprd's `dump_policy` allows several), `path` relative to the target's root, the
collector as an argv, Fedora's defaults.
Which directive sets which field is config/directives.py. The parser (config/kdumpconf.py)
produces the config; the builder only reads it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mkkdumprd.errors import Location

DEFAULT_PATH = "/var/crash"
DEFAULT_COLLECTOR = ("makedumpfile", "-l", "--message-level", "7", "-d", "31")
DEFAULT_SSHKEY = "/root/.ssh/kdump_id_rsa"
# Seconds each hook (kdump_pre, kdump_post, pre.d/post.d) may run before it is killed: long
# enough for real work, short enough that a hung hook still leaves time to dump and reboot.
DEFAULT_HOOK_TIMEOUT = 120
MAX_HOOK_TIMEOUT = 86400
MAX_KEEP_DUMPS = 1000
LOCAL_FSTYPES = ("ext2", "ext3", "ext4", "xfs", "btrfs")


class TargetKind(enum.Enum):
    LOCAL = "local"
    RAW = "raw"
    NFS = "nfs"
    SSH = "ssh"


class DumpPolicy(enum.Enum):
    """What several target lines mean (mkkdumprd's own; Fedora allows one target)."""

    SINGLE = "single"       # one target only: a second target line is an error (Fedora)
    FALLBACK = "fallback"   # try the targets in file order until one holds a complete dump
    ALL = "all"             # dump to every target; saved when at least one holds it


POLICY_HELP = (
    "What several targets mean, overriding kdump.conf's dump_policy: single (one target "
    "only), fallback (try them in order until one holds a complete vmcore) or all (a "
    "complete vmcore on each)."
)


class Action(enum.Enum):
    REBOOT = "reboot"
    HALT = "halt"
    POWEROFF = "poweroff"
    SHELL = "shell"
    DUMP_TO_ROOTFS = "dump_to_rootfs"


FINAL_ACTIONS = (Action.REBOOT, Action.HALT, Action.POWEROFF)


@dataclass(frozen=True)
class Target:
    """Where the dump goes.

    local: `device` is a /dev path, UUID=, LABEL= or PARTUUID=, or None: the filesystem
           holding `path` (no target line). `fstype` is one of LOCAL_FSTYPES, or None when
           not given (no target line, or `--target local:DEVICE`): the builder detects it.
    raw:   `device` is the block device.
    nfs:   `server` is "HOST:/EXPORT" (IPv6 host in brackets).
    ssh:   `server` is "USER@HOST".
    """

    kind: TargetKind
    device: str | None = None
    fstype: str | None = None
    server: str | None = None
    where: Location | None = None

    def describe(self) -> str:
        if self.kind is TargetKind.LOCAL:
            return f"{self.fstype or 'local'} {self.device or '(filesystem of path)'}"
        if self.kind is TargetKind.RAW:
            return f"raw {self.device}"
        return f"{self.kind.value} {self.server}"


@dataclass(frozen=True)
class Diagnostic:
    """An error or warning about kdump.conf: where (file and line) and what."""

    where: Location | None
    message: str
    text: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(frozen=True)
class KdumpConfig:
    """kdump.conf as parsed and checked: every directive's value, defaults filled in."""

    source: str = "<defaults>"
    target: Target = field(default_factory=lambda: Target(TargetKind.LOCAL))
    # The target lines after the first, in file order (each with its `where`); only with a
    # dump_policy other than single.
    more_targets: tuple[Target, ...] = ()
    dump_policy: DumpPolicy = DumpPolicy.SINGLE
    keep_dumps: int = 0          # 0: keep every old dump (Debian's KDUMP_NUM_DUMPS)
    path: str = DEFAULT_PATH
    core_collector: tuple[str, ...] = DEFAULT_COLLECTOR
    sshkey: str = DEFAULT_SSHKEY
    kdump_pre: str | None = None
    kdump_post: str | None = None
    hook_timeout: int = DEFAULT_HOOK_TIMEOUT
    extra_bins: tuple[str, ...] = ()
    extra_modules: tuple[str, ...] = ()
    failure_action: Action = Action.REBOOT
    final_action: Action = Action.REBOOT
    force_rebuild: bool = False
    force_no_rebuild: bool = False
    add_drivers: tuple[str, ...] = ()
    omit_drivers: tuple[str, ...] = ()
    # dracut_args --add: modules.d entries, as `build --add` (config/dracut_modules.py).
    add_modules: tuple[str, ...] = ()
    auto_reset_crashkernel: bool = True
    # fence_kdump (Fedora's generic mode): the peers told while this node dumps, and the
    # sender's options as validated words (config/fence_kdump.py).
    fence_kdump_nodes: tuple[str, ...] = ()
    fence_kdump_args: tuple[str, ...] = ()
    kdump_emergency: str | None = None
    netconsole: str | None = None           # "HOST:PORT": the capture kernel's console over UDP
    warnings: tuple[Diagnostic, ...] = ()
    # Directives that were given explicitly (the rest are defaults), for `config show`, by
    # their key in config/directives.py ("target" for any target line, "failure_action"
    # also for the obsolete `default`, "dracut_args" for add_drivers/omit_drivers/add_modules).
    explicit: frozenset[str] = frozenset()
    # Where each explicit key was written (same keys), so later stages can point at the line.
    locations: tuple[tuple[str, Location], ...] = ()
    # core_collector as written in the file (None: not given). `core_collector` above is the
    # effective argv for the target (default gets -F on raw/ssh, a written -F is dropped on
    # filesystem targets as Fedora does); this keeps the original so a --target override can
    # derive it again.
    core_collector_written: tuple[str, ...] | None = None

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every dump target, in the order the dump tries them."""
        return (self.target, *self.more_targets)

    def location(self, key: str) -> Location | None:
        """Where directive `key` was written, or None for a default."""
        return next((loc for k, loc in self.locations if k == key), None)
