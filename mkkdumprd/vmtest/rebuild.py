"""The image under test rebuilt to dump somewhere else: the same build request (kernel,
modules, drivers, every kdump.conf setting) with only the ssh/nfs destination changed.

Two users: the ssh stand-in (a private sshd on 127.0.0.1: destination, path, key and
known host become the stand-in's, because the real image trusts only the real server's
host key), and `--real-target` (only the path changes, to a `mkkdumprd-test-...` folder
below the configured one; a server on this machine's loopback is dialled by the guest at
its relay address). `Substitution.describe()` is what the report says was changed.

The build reads host keys from ~/.ssh/known_hosts (network/capture.py); a substituted
known host is given to it as a private HOME for the duration of the build. A host-only
build on the live machine tries the login the capture kernel will do (modules.d/ssh
check): for a relayed destination that login is sent to the server's 127.0.0.1 port with
HostKeyAlias set to the guest's name of it, and any other command is refused, so the
build never dials an address the guest alone can reach.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.assemble.builder import BuildRequest
from mkkdumprd.assemble.rebuild_policy import Overwrite, ensure_image
from mkkdumprd.config.model import Target, TargetKind
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Ran, Runner


@dataclass(frozen=True)
class Relay:
    """The guest dials `guest_ip`:`port`; QEMU relays that to 127.0.0.1:`host_port`."""

    guest_ip: str
    host_port: int
    port: int = 22


@dataclass(frozen=True)
class Substitution:
    server: str | None = None         # ssh USER@HOST / nfs HOST:/EXPORT; None: as configured
    path: str | None = None           # the dump path; None: as configured
    sshkey: str | None = None         # None: as configured
    known_hosts: str | None = None    # known_hosts text the build reads instead of the user's
    relay: Relay | None = None        # the build's login check goes through this relay

    def describe(self, config_server: str | None, config_path: str) -> str:
        changed = []
        if self.server is not None and self.server != config_server:
            changed.append(f"destination {config_server} -> {self.server}")
        if self.path is not None and self.path != config_path:
            changed.append(f"path {config_path} -> {self.path}")
        if self.sshkey is not None:
            changed.append(f"sshkey -> {self.sshkey}")
        if self.known_hosts is not None:
            changed.append("known host key -> "
                           + " ".join(self.known_hosts.split()[1:2]) + " (that server's)")
        return "; ".join(changed) + "; every other setting as configured"


def substituted_request(req: BuildRequest, sub: Substitution, out: Path) -> BuildRequest:
    config = req.config
    target = config.target
    if sub.server is not None:
        target = Target(target.kind, device=target.device, fstype=target.fstype,
                        server=sub.server)
    config = dataclasses.replace(config, target=target,
                                 path=sub.path if sub.path is not None else config.path,
                                 sshkey=sub.sshkey or config.sshkey)
    machine = req.machine
    if sub.relay is not None:
        machine = dataclasses.replace(machine, run=relayed_login(sub.relay, machine.run))
    return dataclasses.replace(req, config=config, machine=machine, output=out)


def relayed_login(relay: Relay, run: Runner) -> Runner:
    """A Host.run for the build's ssh login check that dials the relay's 127.0.0.1 port."""
    def login(argv: Sequence[str], timeout: float | None) -> Ran:
        return run(relay_argv(argv, relay), timeout)
    return login


def relay_argv(argv: Sequence[str], relay: Relay) -> list[str]:
    """`ssh ... -p PORT USER@GUEST_IP CMD` → the same login to USER@127.0.0.1 on the
    relay's host port, checking the host key recorded under the guest's name of it."""
    words = list(argv)
    dest = next((i for i, w in enumerate(words) if w.endswith(f"@{relay.guest_ip}")), None)
    if (not words or Path(words[0]).name != "ssh" or dest is None or "-p" not in words
            or words[words.index("-p") + 1] != str(relay.port)):
        raise OperationError(f"refusing to run {words[:1]} for a relayed target: only the "
                             f"ssh login to {relay.guest_ip} is relayed")
    words[words.index("-p") + 1] = str(relay.host_port)
    user = words[dest].rpartition("@")[0]
    words[dest] = f"{user}@127.0.0.1"
    return [words[0], "-o", f"HostKeyAlias={relay.guest_ip}", *words[1:]]


@contextlib.contextmanager
def _home(known_hosts: str | None, where: Path) -> Iterator[None]:
    if known_hosts is None:
        yield
        return
    ssh = where / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    (ssh / "known_hosts").write_text(known_hosts)
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(where)
    try:
        yield
    finally:
        if old is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = old


def rebuild(req: BuildRequest, sub: Substitution, out: Path) -> Path:
    """The image of `req` with `sub` applied, written to `out`."""
    new = substituted_request(req, sub, out)
    if new.config.target.kind not in (TargetKind.SSH, TargetKind.NFS):
        raise OperationError(f"a {new.config.target.kind.value} target is not rebuilt")
    with _home(sub.known_hosts, out.parent / (out.name + ".home")):
        ensure_image(new, Overwrite.ALWAYS)
    return out
