"""A SCSI disk whose transport is iSCSI: the session that holds it, read through a Host.

The kernel puts an iSCSI LUN's device below its session in sysfs
(`.../hostH/sessionN/targetH:C:T/H:C:T:L/block/sdX`); the session's attributes are in
/sys/class/iscsi_session/sessionN (targetname, tpgt, initiatorname) and its connection's in
/sys/class/iscsi_connection/connectionN:C (persistent_address, persistent_port: the portal
logged in to, also after a redirect). The initiator name is open-iscsi's
/etc/iscsi/initiatorname.iscsi (the session's own attribute when that file is missing);
CHAP credentials are those of the node record open-iscsi logs in with,
/etc/iscsi/nodes/<target>/<address>,<port>,<tpgt>/default (`node.session.auth.*`). The
credentials end up in the capture image only (a 0600 file of a 0600 image), never on a
command line the kernel keeps.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from mkkdumprd.host import Host
from mkkdumprd.storage.stack import UnsupportedLayer

INITIATOR_FILE = PurePosixPath("/etc/iscsi/initiatorname.iscsi")
NODES_DIR = PurePosixPath("/etc/iscsi/nodes")
SESSIONS = PurePosixPath("/sys/class/iscsi_session")
CONNECTIONS = PurePosixPath("/sys/class/iscsi_connection")
# The capture kernel's initiator: the TCP transport and the SCSI disk driver (the module
# closure adds libiscsi, libiscsi_tcp and scsi_transport_iscsi).
KERNEL_MODULES = ("iscsi_tcp", "libiscsi", "scsi_transport_iscsi", "sd_mod")

_SESSION_DIR = re.compile(r"^session([0-9]+)$")
_SCSI_ADDR = re.compile(r"^[0-9]+:[0-9]+:[0-9]+:([0-9]+)$")
# iSCSI names (RFC 3720 3.2.6): iqn./eui./naa. and no blanks or control characters.
_ISCSI_NAME = re.compile(r"^(?:iqn\.|eui\.|naa\.)[A-Za-z0-9.:_-]{1,219}$")
# CHAP names and secrets: printable ASCII without blanks (what open-iscsi's record holds).
_CHAP_VALUE = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class Chap:
    """CHAP credentials of a node record: initiator's (username/password) and, for mutual
    CHAP, the target's (username_in/password_in)."""

    username: str
    password: str = ""
    username_in: str = ""
    password_in: str = ""

    def __repr__(self) -> str:      # never shows a secret in a traceback or debug output
        return f"Chap(username={self.username!r}, mutual={bool(self.username_in)})"


@dataclass(frozen=True)
class IscsiLun:
    session: str            # session1: this machine's session, for messages
    target: str             # the target's IQN
    address: str            # portal address
    port: int
    tpgt: int               # target portal group tag (iscsistart -g)
    lun: int
    initiator: str          # the initiator name the capture kernel logs in with
    chap: Chap | None = None

    @property
    def portal(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def describe(self) -> str:
        auth = ", CHAP" if self.chap is not None else ""
        return f"iscsi: {self.target}@{self.portal} lun {self.lun}{auth}"


def lun_of(host: Host, disk: PurePosixPath) -> IscsiLun | None:
    """The iSCSI session under the SCSI disk whose resolved sysfs directory is `disk`, or
    None when the disk is not below an iSCSI session."""
    parts = disk.parts
    found = [i for i, p in enumerate(parts) if _SESSION_DIR.match(p)]
    if not found:
        return None
    i = found[-1]
    session = parts[i]
    lun = next((int(m.group(1)) for p in parts[i + 1:] if (m := _SCSI_ADDR.match(p))), None)
    if lun is None:
        return None
    sdir = SESSIONS / session
    if not host.exists(sdir):
        # a "sessionN" folder that is not an iSCSI session (no such class entry)
        return None
    target = _attr(host, sdir / "targetname")
    if not _ISCSI_NAME.match(target):
        raise UnsupportedLayer(f"the dump target is on the iSCSI {session} whose target name "
                               f"{target!r} cannot be used in the image")
    tpgt = _number(host, sdir / "tpgt", f"the iSCSI {session}'s portal group tag")
    address, port = _portal(host, session)
    initiator = _initiator(host, sdir)
    return IscsiLun(session=session, target=target, address=address, port=port, tpgt=tpgt,
                    lun=lun, initiator=initiator,
                    chap=_chap(host, target, address, port, tpgt))


def _attr(host: Host, path: PurePosixPath) -> str:
    return (host.read_optional(path) or "").strip()


def _number(host: Host, path: PurePosixPath, what: str) -> int:
    text = _attr(host, path)
    if not text.isdigit() or len(text) > 6:
        raise UnsupportedLayer(f"{what} in {path} is {text or 'missing'!s}; expected a number")
    return int(text)


def _portal(host: Host, session: str) -> tuple[str, int]:
    """The address and port of the session's (first) connection: the persistent ones,
    which survive a redirect by the target."""
    conns = [c for c in host.listdir(CONNECTIONS) if c.startswith(f"connection{session[7:]}:")]
    for conn in conns:
        d = CONNECTIONS / conn
        address = _attr(host, d / "persistent_address") or _attr(host, d / "address")
        port = _attr(host, d / "persistent_port") or _attr(host, d / "port")
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if port.isdigit() and 0 < int(port) < 65536:
            return str(ip), int(port)
    raise UnsupportedLayer(f"the dump target is on the iSCSI {session}, but its portal "
                           f"cannot be read from {CONNECTIONS}/connection{session[7:]}:*")


def _initiator(host: Host, sdir: PurePosixPath) -> str:
    text = host.read_optional(INITIATOR_FILE) or ""
    name = ""
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "InitiatorName":
            name = value.strip()
    name = name or _attr(host, sdir / "initiatorname")
    if not _ISCSI_NAME.match(name):
        raise UnsupportedLayer(
            f"the dump target is on an iSCSI LUN, but this machine's initiator name "
            f"({name or 'none'!s}) cannot be read from {INITIATOR_FILE} or sysfs")
    return name


def node_settings(host: Host, target: str, address: str, port: int,
                  tpgt: int) -> dict[str, str] | None:
    """The node record open-iscsi logs in to this portal with (`key = value` lines), or
    None when there is none. Its portal folder is ADDRESS,PORT,TPGT (older layouts: a file
    of that name, or ADDRESS,PORT)."""
    base = NODES_DIR / target
    names = host.listdir(base)
    for name in (f"{address},{port},{tpgt}", f"{address},{port}"):
        if name not in names:
            continue
        path = base / name
        if host.is_dir(path):
            path = path / "default"
            if not host.is_file(path):
                files = host.listdir(base / name)
                if not files:
                    continue
                path = base / name / files[0]
        text = host.read_text(path, errors="replace")
        out: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                out[key.strip()] = value.strip()
        return out
    return None


def _chap(host: Host, target: str, address: str, port: int, tpgt: int) -> Chap | None:
    node = node_settings(host, target, address, port, tpgt)
    if node is None or node.get("node.session.auth.authmethod", "None") != "CHAP":
        return None
    values = {k: node.get(f"node.session.auth.{k}", "")
              for k in ("username", "password", "username_in", "password_in")}
    where = f"{NODES_DIR}/{target}/{address},{port},{tpgt}"
    for k, v in values.items():
        if v and not _CHAP_VALUE.match(v):
            raise UnsupportedLayer(f"{where}: node.session.auth.{k} holds a blank or a "
                                   f"control character; the capture image cannot log in with it")
    if not (values["username"] and values["password"]):
        raise UnsupportedLayer(f"{where}: authmethod is CHAP but node.session.auth.username "
                               f"or .password is empty")
    if bool(values["username_in"]) != bool(values["password_in"]):
        raise UnsupportedLayer(f"{where}: mutual CHAP needs both node.session.auth."
                               f"username_in and .password_in")
    return Chap(**values)


@dataclass(frozen=True)
class IscsiLogin:
    """One login of the capture image (iscsistart's arguments)."""

    target: str
    address: str
    port: str
    tpgt: str
    portal: str             # address:port, for messages
    luns: str               # the LUN(s) the target needs from it, for messages
    username: str = ""
    password: str = ""
    username_in: str = ""
    password_in: str = ""

    def __repr__(self) -> str:
        return f"IscsiLogin(target={self.target!r}, portal={self.portal!r})"


@dataclass(frozen=True)
class IscsiSettings:
    """template_vars of the iscsi module: `iscsi.*` in iscsi.sh.j2."""

    initiator: str
    logins: tuple[IscsiLogin, ...]


def settings(luns: list[IscsiLun]) -> IscsiSettings:
    """One login per target and portal (several LUNs of one session need one login)."""
    initiators = {x.initiator for x in luns}
    if len(initiators) > 1:
        raise UnsupportedLayer(f"the dump target's iSCSI sessions use several initiator "
                               f"names ({', '.join(sorted(initiators))}); expected one")
    by_session: dict[tuple[str, str, int], list[IscsiLun]] = {}
    for x in luns:
        by_session.setdefault((x.target, x.address, x.port), []).append(x)
    logins = []
    for group in by_session.values():
        x = group[0]
        chap = x.chap or Chap("")
        logins.append(IscsiLogin(
            target=x.target, address=x.address, port=str(x.port), tpgt=str(x.tpgt),
            portal=x.portal, luns=" ".join(str(y.lun) for y in group),
            username=chap.username, password=chap.password, username_in=chap.username_in,
            password_in=chap.password_in))
    return IscsiSettings(initiator=luns[0].initiator if luns else "", logins=tuple(logins))
