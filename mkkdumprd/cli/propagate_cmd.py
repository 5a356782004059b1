"""`mkkdumprd propagate`: make the ssh dump target usable without a password.

Like Fedora's `kdumpctl propagate`: create the dump key (sshkey in kdump.conf) if it is
missing, install its public half in the target user's authorized_keys as ssh-copy-id does
(this login may ask for a password), record the target's host key in the user's
known_hosts on first contact (ssh's accept-new: a changed key is refused, never replaced),
then log in with the new key the way the capture kernel will (BatchMode, strict host key
checking), create the dump path and warn when its free space is below this machine's RAM.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import click

from mkkdumprd.config.model import TargetKind
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.input_file import read_input_text
from mkkdumprd.network import ssh_command


def known_hosts_file() -> Path:
    # ssh itself reads ~ from the password database; the builder reads $HOME. Passing the
    # file explicitly keeps both on the same one.
    return Path.home() / ".ssh" / "known_hosts"


def install_command(public_key: str) -> str:
    """The remote side of ssh-copy-id: append the key once, with private permissions."""
    key = public_key.strip()
    if "\n" in key or not key:
        raise UsageError("the public key must be one line")
    grep = ssh_command.remote(["grep", "-qxF", "--", key, ".ssh/authorized_keys"])
    add = ssh_command.remote(["printf", "%s\\n", key]) + " >>.ssh/authorized_keys"
    return (f"cd && umask 077 && mkdir -p .ssh && touch .ssh/authorized_keys && "
            f"{{ {grep} || {add}; }}")


def parse_df_available(output: str) -> int:
    """Available KiB from `df -Pk` output (the last line, 4th column)."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    try:
        return int(lines[-1].split()[3])
    except (IndexError, ValueError):
        raise OperationError(f"cannot read the free space from df output {output!r}") from None


def space_warning(available_kib: int, mem_kib: int, where: str) -> str | None:
    if mem_kib and available_kib < mem_kib:
        return (f"{where} has {available_kib // 1024} MiB free, less than this machine's "
                f"{mem_kib // 1024} MiB of RAM: a dump may not fit (filtered dumps are "
                f"usually much smaller)")
    return None


def _ensure_key(key: Path) -> str:
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        comment = f"kdump@{socket.gethostname()}"
        r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                            "-f", str(key)], capture_output=True, text=True)
        if r.returncode != 0:
            raise OperationError(f"ssh-keygen could not create {key}: {r.stderr.strip()}")
        click.echo(f"created ssh key {key}")
    pub = key.with_name(key.name + ".pub")
    if pub.exists():
        return read_input_text(pub, 64 << 10).strip()
    r = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationError(f"cannot read the public half of {key}: {r.stderr.strip()}; "
                             f"is it a passphrase-less private key?")
    return r.stdout.strip()


@click.command()
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              help="kdump.conf to read (default: /etc/kdump.conf).")
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=22, show_default=True,
              help="ssh port of the target.")
@click.option("-o", "ssh_opts", multiple=True, metavar="OPTION",
              help="Extra ssh option for the key installation login (e.g. IdentityFile=...).")
def propagate(config_path: Path | None, port: int, ssh_opts: tuple[str, ...]) -> None:
    """Install the kdump ssh key on the ssh dump target and record its host key."""
    from mkkdumprd.config.kdumpconf import load_kdump_conf

    config = load_kdump_conf(config_path)
    ssh = next((t for t in config.targets if t.kind is TargetKind.SSH and t.server), None)
    if ssh is None or not ssh.server:
        raise UsageError(
            f"propagate needs an ssh target in {config.source} (ssh USER@HOST), "
            f"not {', '.join(t.describe() for t in config.targets)}"
        )
    target = ssh_command.parse_target(ssh.server, port=port)
    key = Path(config.sshkey)
    public = _ensure_key(key)
    kh = known_hosts_file()
    kh.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    extra = [w for o in ssh_opts for w in ("-o", o)]
    install = ["ssh", "-o", "StrictHostKeyChecking=accept-new",
               "-o", f"UserKnownHostsFile={kh}", "-o", "ConnectTimeout=20", *extra,
               "-p", str(port), target.destination, install_command(public)]
    click.echo(f"installing {key}.pub on {target.destination} (ssh may ask for a password)")
    rc = subprocess.run(install).returncode
    if rc != 0:
        raise OperationError(
            f"could not install the key on {target.destination} (ssh exit status "
            f"{rc}); check that `ssh -p {port} {target.destination}` works"
        )

    path = config.path
    check = " && ".join([ssh_command.mkdir_command(path),
                         ssh_command.remote(["df", "-Pk", "--", path])])
    argv = [*ssh_command.ssh_argv(target, str(key), str(kh)), check]
    host = Host.this_machine()
    r = host.run(argv, None)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise OperationError(
            f"login to {target.destination} with {key} failed after installing it ({why}); "
            f"check the target's sshd settings for public key logins"
        )
    mem_kib = host.meminfo().get("MemTotal", 0) // 1024
    warning = space_warning(parse_df_available(r.stdout), mem_kib, f"{target.destination}:{path}")
    if warning:
        click.echo(f"mkkdumprd: warning: {warning}", err=True)
    click.echo(f"{target.destination} accepts {key}; its host key is in {kh}; "
               f"dump path {path} exists")


COMMANDS: list[click.Command] = [propagate]
