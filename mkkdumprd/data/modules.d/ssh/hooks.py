"""ssh: the key, the target's host key, the ssh settings, and /etc/passwd for OpenSSH."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.errors import OperationError
from mkkdumprd.image import layout
from mkkdumprd.image.spec import Entry, data_entry, file_entry
from mkkdumprd.network import capture, ssh_command


def _target(ctx: BuildContext) -> ssh_command.SshTarget:
    return ssh_command.parse_target(ctx.target.server or "")


def _key(ctx: BuildContext) -> str:
    key = ctx.config.sshkey
    if not ctx.machine.is_file(key):
        raise OperationError(
            f"the ssh key {key} (sshkey in kdump.conf) does not exist; create and install it "
            f"with `mkkdumprd propagate`"
        )
    return key


def entries(ctx: BuildContext) -> list[Entry]:
    t = _target(ctx)
    key = _key(ctx)
    known = capture.host_key_lines(ctx.machine, t)
    return [
        file_entry(layout.SSH_KEY, ctx.machine.real(key),
                   ctx.reason(f"ssh key {key}"), mode=0o600),
        data_entry(layout.SSH_KNOWN_HOSTS, "".join(k + "\n" for k in known),
                   ctx.reason(f"host key of {t.host}"), mode=0o600),
        data_entry("/etc/passwd", capture.PASSWD, ctx.reason("user root (OpenSSH needs it)")),
        data_entry("/etc/group", capture.GROUP, ctx.reason("group root")),
    ]


def template_vars(ctx: BuildContext) -> capture.SshSettings:
    return capture.ssh_settings(_target(ctx), ctx.config.path)


def check(ctx: BuildContext) -> list[str]:
    """Host-only builds on the live machine try the login the capture kernel will do."""
    t = _target(ctx)
    key = _key(ctx)
    capture.host_key_lines(ctx.machine, t)
    if not (ctx.hostonly and ctx.machine.is_live):
        return []
    files = [f for f in capture.known_hosts_files(ctx.machine) if ctx.machine.is_file(f)]
    argv = [*ssh_command.ssh_argv(t, key, " ".join(files) or "/dev/null", connect_timeout=10),
            ssh_command.remote(["true"])]
    r = ctx.machine.run(argv, 60.0)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise OperationError(
            f"ssh to {t.destination} with key {key} failed ({why}); fix it with "
            f"`mkkdumprd propagate` (installs the key and records the host key)"
        )
    return []
