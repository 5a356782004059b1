"""The one ssh command line, as an argv list (never a string), and the remote commands:
for the capture image's dump (rendered into target.sh through the template context), for
`propagate` and for the build's login check.

Values the user controls (paths, user, host) reach two shells: the local one that runs
ssh, which the argv form keeps out of, and the remote login shell, which gets ssh's
command words joined by spaces. Remote commands are therefore built here from word lists
with quoting.shell_word (remote()), and user/host are validated so they can never be taken for
options. Host keys are always checked (BatchMode=yes, StrictHostKeyChecking=yes).

Two values are known only at dump time, and the dump commands name them as remote
variables that the capture script sets first (kdump_ssh in target-ssh.sh.j2): the dump
directory as "$d", from the build-time quoted path (remote_dir_prefix()) and the
`<ip>-<date>` name it has checked, and the number of bytes it sent as "$n", which it has
checked to be digits only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mkkdumprd.errors import UsageError
from mkkdumprd.quoting import shell_word

_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}\$?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$")
DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 20


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str          # name or address, IPv6 without brackets
    port: int = DEFAULT_PORT

    @property
    def destination(self) -> str:
        """`user@host` as ssh takes it (ssh wants IPv6 unbracketed)."""
        return f"{self.user}@{self.host}"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host)) and len(host) <= 253


def parse_target(spec: str, port: int = DEFAULT_PORT) -> SshTarget:
    """`user@host`, `user@[v6addr]` or `user@v6addr` (Fedora's form)."""
    user, at, host = spec.rpartition("@")
    if not at or not user:
        raise UsageError(f"ssh target {spec!r} must be USER@HOST")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not _USER.match(user):
        raise UsageError(f"ssh target {spec!r}: {user!r} is not a valid user name")
    if not _valid_host(host):
        raise UsageError(f"ssh target {spec!r}: {host!r} is not a valid host name or address")
    if not 0 < port < 65536:
        raise UsageError(f"ssh port {port} is out of range 1-65535")
    return SshTarget(user, host, port)


def ssh_options(key: str, known_hosts: str, port: int = DEFAULT_PORT,
                connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> list[str]:
    return [
        "-i", key,
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", f"ConnectTimeout={connect_timeout}",
        # a server that dies mid-dump ends the transfer within a minute instead of never
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
        "-p", str(port),
    ]


@dataclass(frozen=True)
class InDir:
    """A remote command word made of the dump directory: prefix + "$d" + suffix."""

    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class SentBytes:
    """A remote command word: the number of bytes the capture side sent, "$n"."""


@dataclass(frozen=True)
class SizeOf:
    """A remote command word: the size in bytes of a file in the dump directory."""

    path: InDir


Word = str | InDir | SentBytes | SizeOf


def _in_dir(w: InDir) -> str:
    return "".join([shell_word(w.prefix) if w.prefix else "", '"$d"',
                    shell_word(w.suffix) if w.suffix else ""])


def _word(w: Word) -> str:
    if isinstance(w, str):
        return shell_word(w)
    if isinstance(w, InDir):
        return _in_dir(w)
    if isinstance(w, SentBytes):
        return '"$n"'
    return f'"$(wc -c <{_in_dir(w.path)})"'


def remote(*commands: Sequence[Word]) -> str:
    """One remote shell command line: each command's words quoted, commands joined by &&."""
    return " && ".join(" ".join(_word(w) for w in c) for c in commands)


def ssh_argv(target: SshTarget, key: str, known_hosts: str, *, ssh: str = "ssh",
             connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> list[str]:
    """argv up to the destination; the caller appends one remote command (from remote())."""
    return [ssh, *ssh_options(key, known_hosts, target.port, connect_timeout),
            target.destination]


def mkdir_command(directory: Word) -> str:
    return remote(["mkdir", "-p", "--", directory])


@dataclass(frozen=True)
class DumpCommands:
    """The remote side of the capture image's ssh dump, in the directory "$d"."""

    mkdir: str
    send_dmesg: str      # stdin → vmcore-dmesg-incomplete.txt
    keep_dmesg: str      # ... renamed to vmcore-dmesg.txt
    send_vmcore: str     # stdin (the flattened collector stream) → vmcore-incomplete, flushed
    keep_vmcore: str     # ... renamed to vmcore.flat if it holds all "$n" bytes sent
    send_log: str        # stdin → kexec-dmesg.log (the capture image's log)
    send_reason: str     # stdin → failure-reason.txt (why the attempt failed)


def dump_commands() -> DumpCommands:
    # only the owner may read the dump; dd's record counts are not worth a console line
    umask = ["umask", "0077"]
    quiet = " 2>/dev/null"
    dmesg, vmcore = "/vmcore-dmesg-incomplete.txt", "/vmcore-incomplete"
    return DumpCommands(
        mkdir=mkdir_command(InDir()),
        send_dmesg=remote(umask, ["dd", InDir("of=", dmesg)]) + quiet,
        keep_dmesg=remote(["mv", "-f", "--", InDir(suffix=dmesg),
                           InDir(suffix="/vmcore-dmesg.txt")]),
        # conv=fsync: dd's status covers the flush to the remote disk, before the rename
        send_vmcore=remote(umask, ["dd", "bs=512", InDir("of=", vmcore), "conv=fsync"]) + quiet,
        # a cut stream (a lost connection, a full remote disk) never becomes vmcore.flat
        keep_vmcore=remote(["test", SizeOf(InDir(suffix=vmcore)), "-eq", SentBytes()],
                           ["mv", "-f", "--", InDir(suffix=vmcore),
                            InDir(suffix="/vmcore.flat")]),
        send_log=remote(umask, ["dd", InDir("of=", "/kexec-dmesg.log")]) + quiet,
        send_reason=remote(umask, ["dd", InDir("of=", "/failure-reason.txt")]) + quiet,
    )


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    """A known_hosts line for `host` from a `.pub` / ssh-keyscan key (`TYPE BASE64 [comment]`).

    ssh looks non-default ports up as `[host]:port`; the default port as the bare host.
    """
    words = public_key.split()
    if len(words) >= 3 and not words[0].startswith(("ssh-", "ecdsa-", "sk-")):
        words = words[1:]       # a keyscan line "host type key": drop its host field
    if len(words) < 2:
        raise UsageError(f"host key {public_key!r} is not of the form 'TYPE BASE64'")
    name = host if port == DEFAULT_PORT else f"[{host}]:{port}"
    return f"{name} {words[0]} {words[1]}"


def remote_dir_prefix(path: str) -> str:
    """`path/` quoted for the remote shell, so a script can append a safe runtime suffix
    (an address and a date) without quoting it again: `'/var/my crash/'10.0.2.15-...`."""
    return shell_word(path.rstrip("/") + "/")
