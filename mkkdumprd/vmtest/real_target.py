"""`mkkdumprd test --vm --real-target`: the test dump goes to the configured server itself.

Only after the user confirmed (`confirm`: a terminal prompt, or --yes; refused otherwise).
The image under test is rebuilt (rebuild.py) with one change: its path gets a fresh
folder `mkkdumprd-test-<UTC time>-<8 hex>` below the configured one, so the test never
writes beside real dumps. Before the boot the folder must not exist on the server; after
it the vmcore is read back and the folder removed, each with one ssh command built by
network/ssh_command.py with the configured key and this machine's known_hosts (the same
trust the image has). `rm -rf` is only ever given a path whose last component matches
TEST_DIR.

The guest reaches the server through QEMU user networking without restrict=on. A server
on this machine's loopback (127.0.0.0/8, ::1) is the exception: the guest's own loopback
is not this machine's, so the rebuilt image dials 10.0.2.100 and one guestfwd relay (with
restrict=on) carries that to the server's 127.0.0.1 port; the host key recorded for the
loopback name is carried under 10.0.2.100 (rebuild.Substitution names both).

nfs targets: real_nfs.py (the export is read and the folder removed by a second guest
boot, since this machine does not mount it).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import secrets
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host, Ran, run_command
from mkkdumprd.image.spec import Entry
from mkkdumprd.network import capture, ssh_command
from mkkdumprd.vmtest import rebuild, vmcore_check
from mkkdumprd.vmtest.local_target import GuestBoot
from mkkdumprd.vmtest.qemu import Drive
from mkkdumprd.vmtest.real_nfs import RealNfsTarget, real_nfs_target
from mkkdumprd.vmtest.servers import GUEST_SERVER_IP, loopback_relay
from mkkdumprd.vmtest.targets import NIC_DRIVERS, missing

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest

TEST_DIR = re.compile(r"mkkdumprd-test-\d{8}T\d{6}Z-[0-9a-f]{8}")
# The folder the capture image makes below the path: `<ip>-<date>` (target-ssh.sh.j2).
DUMP_DIR = re.compile(r"[0-9A-Fa-f.:]+-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")
SSH_TIMEOUT = 600.0


def folder_name(now: datetime | None = None, token: str | None = None) -> str:
    """`mkkdumprd-test-20261203T174600Z-1a2b3c4d`: UTC time and 32 random bits."""
    now = now or datetime.now(UTC)
    name = f"mkkdumprd-test-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{token or secrets.token_hex(4)}"
    if not TEST_DIR.fullmatch(name):
        raise ValueError(f"test folder name {name!r}")
    return name


def folder_path(path: str, name: str) -> str:
    """The test folder below the configured dump path."""
    if not TEST_DIR.fullmatch(name):
        raise ValueError(f"test folder name {name!r}")
    return posixpath.join(path or "/", name)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def confirm(what: str, yes: bool, interactive: bool, ask: Callable[[str], bool]) -> None:
    """Go on only when the user agreed: --yes, or a yes at the terminal prompt."""
    if yes:
        return
    if not interactive:
        raise UsageError("refusing to write to the real target without --yes (stdin is not "
                         "a terminal); " + what)
    if not ask(f"{what}\nContinue?"):
        raise OperationError("not confirmed: nothing was sent to the target")


@dataclass(frozen=True)
class RemoteCommands:
    """The host's ssh commands on the server, argv lists (network/ssh_command.py)."""

    target: ssh_command.SshTarget
    key: str
    known_hosts: str          # files, space-separated (ssh's UserKnownHostsFile)

    def argv(self, *command: Sequence[ssh_command.Word]) -> list[str]:
        return [*ssh_command.ssh_argv(self.target, self.key, self.known_hosts),
                ssh_command.remote(*command)]

    def absent(self, folder: str) -> list[str]:
        return self.argv(["test", "!", "-e", folder])

    def listing(self, folder: str) -> list[str]:
        return self.argv(["ls", "-1", "--", folder])

    def fetch(self, file: str) -> list[str]:
        return self.argv(["cat", "--", file])

    def remove(self, folder: str) -> list[str]:
        if not TEST_DIR.fullmatch(posixpath.basename(folder)):
            raise ValueError(f"refusing to remove {folder!r}: not a mkkdumprd-test folder")
        return self.argv(["rm", "-rf", "--", folder])


Fetch = Callable[[Sequence[str], Path], int]


def fetch_to_file(argv: Sequence[str], out: Path) -> int:
    with open(out, "wb") as f:
        return subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=f,
                              stderr=subprocess.DEVNULL, timeout=SSH_TIMEOUT,
                              check=False).returncode


@dataclass
class RealSshTarget:
    server: str                       # USER@HOST as configured
    folder: str                       # the test folder on the server
    commands: RemoteCommands
    image: Path | None
    substituted: str
    missing_drivers: tuple[str, ...]
    guestfwd: tuple[str, ...]
    open_network: bool
    run: Callable[[Sequence[str], float | None], Ran] = field(default=run_command)
    fetch: Fetch = field(default=fetch_to_file)
    drives: tuple[Drive, ...] = ()
    prepare: tuple[Entry, ...] = ()
    removed: bool | None = None

    def describe(self) -> str:
        how = ("QEMU user networking (not restricted)" if self.open_network else
               f"a guestfwd relay from {GUEST_SERVER_IP}:22 to this machine's loopback")
        return (f"the real server {self.server}, test folder {self.folder} (removed "
                f"afterwards), reached through {how}; the image booted is the image under "
                f"test rebuilt for it ({self.image}): {self.substituted}")

    def _check(self, argv: Sequence[str], what: str) -> Ran:
        r = self.run(argv, SSH_TIMEOUT)
        if r.returncode != 0:
            why = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise OperationError(f"{what} on {self.server} failed ({why})")
        return r

    def check_absent(self) -> None:
        r = self.run(self.commands.absent(self.folder), SSH_TIMEOUT)
        if r.returncode != 0:
            raise OperationError(f"{self.folder} already exists on {self.server} (or ssh "
                                 "failed); nothing was written")

    def read_back(self, out: Path) -> Path:
        names = self._check(self.commands.listing(self.folder), f"listing {self.folder}")
        dirs = sorted(n for n in names.stdout.split() if DUMP_DIR.fullmatch(n))
        if not dirs:
            raise OperationError(f"no dump directory under {self.folder} on {self.server}")
        flat = out.with_name(out.name + ".flat")
        src = posixpath.join(self.folder, dirs[-1], "vmcore.flat")
        rc = self.fetch(self.commands.fetch(src), flat)
        if rc != 0:
            raise OperationError(f"no complete vmcore.flat at {src} on {self.server} "
                                 f"(ssh cat exited {rc})")
        return vmcore_check.restore_flat(flat, out)

    def close(self) -> str | None:
        r = self.run(self.commands.remove(self.folder), SSH_TIMEOUT)
        self.removed = r.returncode == 0
        if self.removed:
            return f"removed {self.folder} from {self.server}"
        return (f"COULD NOT REMOVE {self.folder} from {self.server} (ssh exited "
                f"{r.returncode}); remove it by hand")


def real_target(target: Mapping[str, Any], request: BuildRequest | None,
                modules: frozenset[str], workdir: Path, name: str | None = None,
                machine: Host | None = None,
                boot: GuestBoot | None = None) -> RealSshTarget | RealNfsTarget:
    """The configured server, with the image rebuilt to dump into a test folder."""
    kind = target.get("kind")
    if kind not in ("ssh", "nfs"):
        raise UsageError(f"--real-target is for nfs and ssh targets, not {kind}: a local "
                         "or raw target is proved on a scratch disk; leave --real-target out")
    if request is None:
        raise UsageError("--real-target rebuilds the image with a test folder as its path: "
                         "give -c/--target instead of --image")
    if kind == "nfs":
        if boot is None:
            raise UsageError("--real-target for nfs needs the guest's kernel for its "
                             "read-back boot")
        return real_nfs_target(target, request, modules, workdir, name or folder_name(), boot)
    machine = machine or Host.this_machine()
    server = str(target.get("server") or "")
    t = ssh_command.parse_target(server)
    path = str(target.get("path") or "/var/crash")
    folder = folder_path(path, name or folder_name())
    files = [f for f in capture.known_hosts_files(machine) if machine.is_file(f)]
    commands = RemoteCommands(t, request.config.sshkey, " ".join(files) or "/dev/null")
    if is_loopback(t.host):
        keys = [line.split(None, 1)[1] for line in capture.host_key_lines(machine, t)]
        sub = rebuild.Substitution(
            server=f"{t.user}@{GUEST_SERVER_IP}", path=folder,
            known_hosts="".join(ssh_command.known_hosts_line(GUEST_SERVER_IP, 22, k) + "\n"
                                for k in keys),
            relay=rebuild.Relay(GUEST_SERVER_IP, t.port))
        fwd: tuple[str, ...] = (loopback_relay(GUEST_SERVER_IP, 22, t.port),)
        open_network = False
    else:
        sub = rebuild.Substitution(path=folder)
        fwd, open_network = (), True
    real = RealSshTarget(server, folder, commands, None, sub.describe(server, path),
                         missing(NIC_DRIVERS, modules), fwd, open_network, run=machine.run)
    real.check_absent()
    real.image = rebuild.rebuild(request, sub, workdir / "capture-for-real-target.img")
    return real
