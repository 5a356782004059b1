"""Stand-in dump-target servers on 127.0.0.1 only, for `mkkdumprd test --vm` and the tests.

nfs-ganesha (NFSv4.1/4.2, one fresh export directory per server) and a private OpenSSH
sshd with its own host key and client key. Each runs in the foreground as a child of the
test, on a free loopback port; stop() sends SIGTERM to that PID only. Guests reach them
through QEMU `guestfwd=tcp:IP:PORT-cmd:/bin/busybox nc 127.0.0.1 <port>` (IP: what the image
dials, 10.0.2.100 in the tests).
The host never mounts NFS: ganesha is checked by its listening socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mkkdumprd.errors import OperationError

GUEST_SERVER_IP = "10.0.2.100"    # what guests dial; QEMU relays it to 127.0.0.1:port
START_TIMEOUT = 20.0


class ServerError(OperationError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def require(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists()
                                  else None)
    if path is None:
        raise ServerError(f"{tool} not found; the stand-in server needs it (package "
                          f"{package})")
    return path


def _tail(log: Path, n: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"



def loopback_relay(guest_ip: str, guest_port: int, host_port: int) -> str:
    """A VMSpec.guestfwd entry: the guest's connections to guest_ip:guest_port are relayed
    to 127.0.0.1:host_port on this machine (QEMU runs busybox nc for each)."""
    return f"tcp:{guest_ip}:{guest_port}-cmd:/bin/busybox nc 127.0.0.1 {host_port}"


class _Server:
    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    def _spawn(self, argv: list[str]) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with rc {self.proc.returncode} at "
                                  f"start; log:\n{_tail(self.log)}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} did not listen on 127.0.0.1:{self.port} "
                                  f"within {START_TIMEOUT:.0f} s; log:\n{_tail(self.log)}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait()

    def guestfwd(self, guest_port: int, guest_ip: str = GUEST_SERVER_IP) -> str:
        """The VMSpec.guestfwd entry that relays guest_ip:guest_port here."""
        return loopback_relay(guest_ip, guest_port, self.port)

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


GANESHA_CONF = """\
NFS_CORE_PARAM {{
    Protocols = 4;
    NFS_Port = {port};
    Bind_Addr = 127.0.0.1;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSV4 {{
    Graceless = true;
    Minor_Versions = 1, 2;
    Only_Numeric_Owners = true;
    RecoveryBackend = fs;
    RecoveryRoot = "{recov}";
}}
NFS_KRB5 {{ Active_krb5 = false; }}
MDCACHE {{
    LRU_Run_Interval = 1;
    FD_LWMark_Percent = 0;
    FD_HWMark_Percent = 1;
}}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = {pseudo};
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 4;
    Transports = TCP;
    Attr_Expiration_Time = 0;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"""


class NfsServer(_Server):
    """nfs-ganesha exporting a fresh `workdir/export` as `/export` (NFSv4.1+, TCP)."""

    name = "ganesha"
    pseudo = "/export"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.export = workdir / "export"
        self.fixed_port = port          # None: a free port

    def start(self) -> NfsServer:
        binary = require("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs")
        for d in ("export", "recov", "run"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        self.port = self.fixed_port or free_port()
        conf = self.workdir / "ganesha.conf"
        conf.write_text(GANESHA_CONF.format(port=self.port, recov=self.workdir / "recov",
                                            export=self.export, pseudo=self.pseudo))
        self._spawn([binary, "-F", "-f", str(conf), "-L", str(self.log),
                     "-p", str(self.workdir / "run/ganesha.pid")])
        return self


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/hostkey_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
UseDNS no
AllowUsers root
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel VERBOSE
"""


@dataclass(frozen=True)
class SshKeys:
    host_public: str        # "ssh-ed25519 AAAA... comment"
    client_key: Path        # private, OpenSSH format
    client_public: str


class SshServer(_Server):
    """A private sshd on a free 127.0.0.1 port, accepting only its own client key for root."""

    name = "sshd"

    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None) -> None:
        super().__init__(workdir)
        self.keys: SshKeys | None = None
        self.extra_config = extra_config
        self.fixed_port = port          # None: a free port

    def _keygen(self, path: Path, comment: str) -> str:
        keygen = require("ssh-keygen", "openssh-client")
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                        str(path)], check=True, capture_output=True)
        return path.with_suffix(".pub").read_text().strip()

    def start(self) -> SshServer:
        binary = require("sshd", "openssh-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        host_pub = self._keygen(self.workdir / "hostkey_ed25519", "mkkdumprd-test-host")
        client_pub = self._keygen(self.workdir / "client_ed25519", "mkkdumprd-test-client")
        auth = self.workdir / "authorized_keys"
        auth.write_text(client_pub + "\n")
        auth.chmod(0o600)
        self.keys = SshKeys(host_pub, self.workdir / "client_ed25519", client_pub)
        # sshd refuses to start as root without its privilege-separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.port = self.fixed_port or free_port()
        conf = self.workdir / "sshd_config"
        # sshd keeps the first value of a keyword: extra settings go first to win
        conf.write_text(self.extra_config + SSHD_CONFIG.format(port=self.port, dir=self.workdir))
        check = subprocess.run([binary, "-t", "-f", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise ServerError(f"sshd rejected {conf}: {check.stderr.strip()}")
        self._spawn([binary, "-D", "-e", "-f", str(conf)])
        return self
