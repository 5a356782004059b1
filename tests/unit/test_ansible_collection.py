"""The Ansible collection (ansible/): the dump server's forced command against the capture
image's real remote commands, the dump directory naming of two hosts crashing in the same
second, the modules run by ansible against a scratch root, ansible-lint, and
`ansible-galaxy collection build`.

The forced command is checked against network/ssh_command.py's dump_commands() (not a copy
of them), so a change of the remote commands that the server would refuse fails here.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from mkkdumprd.network import ssh_command
from tests.support.ansible_tools import (
    COLLECTION,
    REPO,
    collections_path,
    environment,
    mkkdumprd_wrapper,
    run,
    tool,
)

FORCED = COLLECTION / "roles/dump_server/files/mkkdumprd-dump-only"
TEMPLATE = REPO / "mkkdumprd/data/templates/target-ssh.sh.j2"
BASE = "/var/crash dumps"


def _forced_module() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("mkkdumprd_dump_only", str(FORCED))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _sent(base: str, name: str, n: str, command: str) -> str:
    """What the capture image's kdump_ssh sends (target-ssh.sh.j2)."""
    return f"d={ssh_command.remote_dir_prefix(base)}{name} && n={n} && {command}"


def test_forced_command_allows_exactly_the_capture_images_commands() -> None:
    allowed = _forced_module().allowed
    cmds = ssh_command.dump_commands()
    name = "10.0.2.15-2026-12-03-16:40:00"
    for command in vars(cmds).values():
        assert allowed(_sent(BASE, name, "", command), BASE), command
        assert allowed(_sent(BASE, name, "1234", command), BASE), command
    assert allowed(_sent(BASE, "fe80::1-2026-12-03-16:40:00", "", cmds.mkdir), BASE)
    assert allowed("true", BASE)   # the build's login check
    check = " && ".join([ssh_command.mkdir_command(BASE),
                         ssh_command.remote(["df", "-Pk", "--", BASE])])
    assert allowed(check, BASE)    # what `mkkdumprd propagate` runs after the key install

    refused = [
        _sent(BASE, "..", "", cmds.mkdir),
        _sent(BASE, ".hidden", "", cmds.mkdir),
        _sent(BASE, "a/../../etc", "", cmds.mkdir),
        _sent(BASE, "a b", "", cmds.mkdir),
        _sent(BASE, name, "1; rm -rf /", cmds.keep_vmcore),
        _sent(BASE, name, "", cmds.mkdir + "; rm -rf ~"),
        _sent(BASE, name, "", cmds.mkdir + "\nrm -rf ~"),
        _sent(BASE, name, "", "rm -rf \"$d\""),
        _sent("/etc", name, "", cmds.mkdir),
        _sent(BASE + "/sub", name, "", cmds.mkdir),
        f"d=/var/crash\\ dumps/{name} && n= && {cmds.mkdir}",
        "sh", "", "true; id", "scp -t /tmp",
    ]
    for command in refused:
        assert not allowed(command, BASE), command


def _forced(base: Path, command: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command}
    return subprocess.run([str(FORCED), str(base)], input=stdin, env=env,
                          capture_output=True, check=False)


def _dump_through_forced_command(base: Path, name: str, dmesg: bytes, vmcore: bytes) -> None:
    cmds = ssh_command.dump_commands()
    steps = [(cmds.mkdir, "", b""), (cmds.send_dmesg, "", dmesg), (cmds.keep_dmesg, "", b""),
             (cmds.send_vmcore, "", vmcore), (cmds.keep_vmcore, str(len(vmcore)), b"")]
    for command, n, data in steps:
        r = _forced(base, _sent(str(base), name, n, command), data)
        assert r.returncode == 0, (command, r.stderr)


def _dir_name(ip: str, fake_bin: Path) -> str:
    """The dump directory name as target-ssh.sh.j2's target_prepare forms it."""
    line = re.search(r"^\s*(_name=.*)$", TEMPLATE.read_text(), re.MULTILINE)
    assert line is not None
    script = f"KDUMP_NET_LOCAL_IP={ip}\n{line.group(1)}\nprintf %s \"$_name\"\n"
    r = subprocess.run(["sh", "-c", script], env={"PATH": f"{fake_bin}:/usr/bin:/bin"},
                       capture_output=True, text=True, check=True)
    return r.stdout


def test_two_hosts_crashing_in_the_same_second_get_their_own_dump(tmp_path: Path) -> None:
    """Unit level: both hosts' dumps go through the forced command for real, named as the
    capture script names them, with `date` pinned to one second (no VMs crash here)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "date").write_text("#!/bin/sh\necho 2026-12-03-16:40:00\n")
    (fake_bin / "date").chmod(0o755)
    base = tmp_path / "crash dumps"
    base.mkdir()
    names = [_dir_name(ip, fake_bin) for ip in ("10.0.2.15", "10.0.2.16")]
    assert names == ["10.0.2.15-2026-12-03-16:40:00", "10.0.2.16-2026-12-03-16:40:00"]
    for i, name in enumerate(names):
        _dump_through_forced_command(base, name, f"dmesg {i}\n".encode(), bytes([i]) * 4096)
    for i, name in enumerate(names):
        d = base / name
        assert sorted(p.name for p in d.iterdir()) == ["vmcore-dmesg.txt", "vmcore.flat"]
        assert (d / "vmcore.flat").read_bytes() == bytes([i]) * 4096
        assert (d / "vmcore-dmesg.txt").read_text() == f"dmesg {i}\n"
        assert (d / "vmcore.flat").stat().st_mode & 0o077 == 0


def test_forced_command_keeps_a_cut_vmcore_incomplete(tmp_path: Path) -> None:
    cmds = ssh_command.dump_commands()
    name = "10.0.2.15-2026-12-03-16:40:00"
    for command, data in ((cmds.mkdir, b""), (cmds.send_vmcore, b"x" * 100)):
        assert _forced(tmp_path, _sent(str(tmp_path), name, "", command), data).returncode == 0
    r = _forced(tmp_path, _sent(str(tmp_path), name, "4096", cmds.keep_vmcore))
    assert r.returncode != 0
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["vmcore-incomplete"]
    r = _forced(tmp_path, "touch /tmp/owned")
    assert r.returncode == 1 and b"refused" in r.stderr


def _module(tmp_path: Path, module: str, args: dict[str, object],
            *flags: str) -> dict[str, object]:
    """Run one of the collection's modules on localhost with ansible, as a play would."""
    top = tmp_path / "c" / "collections"
    env = environment(top if top.is_dir() else collections_path(tmp_path / "c"))
    r = run([tool("ansible"), "localhost", "-c", "local", "-o", "-m",
             f"mkkdumprd.kdump.{module}", "-a", json.dumps(args), *flags], env)
    out = r.stdout
    m = re.search(r"=> (\{.*\})\s*$", out, re.DOTALL)
    assert m, f"ansible said:\n{out}\n{r.stderr}"
    result: dict[str, object] = json.loads(m.group(1))
    result["_rc"] = r.returncode
    result["_failed"] = "| FAILED!" in out
    return result


def test_crashkernel_module_changes_once_and_honours_check_and_diff(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    exe = str(mkkdumprd_wrapper(tmp_path))
    # as the role passes it: recommended false beside a value
    args = {"root": str(root), "value": "96M 256M,cma", "recommended": False, "executable": exe}
    dropin = root / "etc/default/grub.d/mkkdumprd.cfg"

    checked = _module(tmp_path, "mkkdumprd_crashkernel", args, "--check", "--diff")
    assert checked["_rc"] == 0 and checked["changed"] is True, checked
    assert "crashkernel=256M,cma" in str(checked["diff_text"])
    assert not dropin.exists()

    applied = _module(tmp_path, "mkkdumprd_crashkernel", args)
    assert applied["changed"] is True and applied["reboot_required"] is True, applied
    assert applied["reserved"] is None       # a scratch root has no /sys
    assert "crashkernel=96M" in dropin.read_text()
    assert "crashkernel=256M,cma" in dropin.read_text()

    again = _module(tmp_path, "mkkdumprd_crashkernel", args)
    assert again["_rc"] == 0 and again["changed"] is False, again
    assert again["reboot_required"] is False


def test_crashkernel_module_writes_the_recommendation(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/default").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    (root / "proc/meminfo").write_text("MemTotal:        4028536 kB\n")
    args = {"root": str(root), "recommended": True, "executable": str(mkkdumprd_wrapper(tmp_path))}
    applied = _module(tmp_path, "mkkdumprd_crashkernel", args)
    assert applied["_rc"] == 0 and applied["changed"] is True, applied
    assert "crashkernel=" in (root / "etc/default/grub.d/mkkdumprd.cfg").read_text()
    assert _module(tmp_path, "mkkdumprd_crashkernel", args)["changed"] is False


def test_service_module_fails_when_mkkdumprd_loads_nothing(tmp_path: Path) -> None:
    """`loaded` on a scratch root, which is not the running system: mkkdumprd refuses (no
    running kernel there to read) and the module fails with its message instead of
    claiming a load; check mode only asks `mkkdumprd status` and reports the change."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    exe = str(mkkdumprd_wrapper(tmp_path))
    result = _module(tmp_path, "mkkdumprd_service",
                     {"root": str(root), "state": "loaded", "executable": exe})
    assert result["_rc"] != 0 and result["_failed"], result
    assert "mkkdumprd: error:" in str(result["msg"])
    checked = _module(tmp_path, "mkkdumprd_service",
                      {"root": str(root), "state": "loaded", "executable": exe}, "--check")
    assert checked["_rc"] == 0 and checked["changed"] is True, checked


def test_ansible_lint_passes(tmp_path: Path) -> None:
    top = collections_path(tmp_path)
    here = top / "ansible_collections/mkkdumprd/kdump"
    r = run([tool("ansible-lint"), "--offline", "-p", "--nocolor"], environment(top), cwd=here)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "Passed with production profile" in r.stdout + r.stderr


def test_galaxy_collection_builds(tmp_path: Path) -> None:
    r = run([tool("ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path),
             str(COLLECTION)], dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    (tarball,) = tmp_path.glob("mkkdumprd-kdump-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert manifest["collection_info"]["namespace"] == "mkkdumprd"
    assert manifest["collection_info"]["name"] == "kdump"
    for path in ("roles/mkkdumprd/tasks/main.yml", "roles/mkkdumprd/defaults/main.yml",
                 "roles/mkkdumprd/templates/kdump.conf.j2", "roles/dump_server/tasks/main.yml",
                 "roles/dump_server/files/mkkdumprd-dump-only",
                 "plugins/modules/mkkdumprd_service.py",
                 "plugins/modules/mkkdumprd_crashkernel.py"):
        assert path in names, sorted(names)
    assert not any(n.startswith("tests") for n in names)


@pytest.mark.parametrize("module", ["mkkdumprd_service", "mkkdumprd_crashkernel"])
def test_module_documentation_parses(module: str) -> None:
    r = subprocess.run([tool("ansible-doc"), "-M", str(COLLECTION / "plugins/modules"),
                        "--json", module], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)[module]["doc"]
    assert doc["module"] == module and doc["options"]


RENDER = """\
- hosts: localhost
  gather_facts: false
  vars_files: [{defaults}, {vars}]
  tasks:
    - name: Render kdump.conf as the role does, validated as the role validates it
      ansible.builtin.template:
        src: {template}
        dest: "{{{{ dest }}}}"
        mode: "0644"
        validate: "{exe} config check -c %s"
"""


@pytest.mark.parametrize(("extra", "lines"), [
    # linux-system-roles/kdump's ssh form: no location, user and server apart
    ({"kdump_target": {"type": "ssh"}, "kdump_ssh_user": "kdump",
      "kdump_ssh_server": "dump.example.com"},
     ["ssh kdump@dump.example.com", "path /var/crash", "sshkey /root/.ssh/kdump_id_rsa",
      "failure_action reboot", "auto_reset_crashkernel yes"]),
    ({"kdump_target": {"type": "nfs", "location": "nas.example.com:/export/crash"},
      "kdump_core_collector": "makedumpfile -l --message-level 7 -d 31",
      "kdump_system_action": "poweroff", "kdump_auto_reset_crashkernel": False,
      "kdump_dracut_args": '--add-drivers "virtio_net"'},
     ["nfs nas.example.com:/export/crash", "path /var/crash",
      "core_collector makedumpfile -l --message-level 7 -d 31",
      "failure_action poweroff", "auto_reset_crashkernel no",
      'dracut_args --add-drivers "virtio_net"']),
], ids=["ssh-lsr-style", "nfs"])
def test_role_kdump_conf_from_system_role_variables_passes_config_check(
        tmp_path: Path, extra: dict[str, object], lines: list[str]) -> None:
    role = COLLECTION / "roles/mkkdumprd"
    play = tmp_path / "render.yml"
    play.write_text(RENDER.format(defaults=role / "defaults/main.yml",
                                  vars=role / "vars/main.yml",
                                  template=role / "templates/kdump.conf.j2",
                                  exe=mkkdumprd_wrapper(tmp_path)))
    dest = tmp_path / "kdump.conf"
    env = environment(collections_path(tmp_path))
    r = run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
             "-e", json.dumps({**extra, "dest": str(dest)})], env)
    assert r.returncode == 0, r.stdout[-4000:]
    written = [ln for ln in dest.read_text().splitlines() if ln and not ln.startswith("#")]
    assert written == lines


def test_the_roles_vm_verification_finds_test_vm_in_this_mkkdumprd(tmp_path: Path) -> None:
    """roles/mkkdumprd/tasks/verify.yml runs `mkkdumprd test --vm` only when `mkkdumprd test
    --help` exits 0 and names --vm: true of this mkkdumprd."""
    verify = (COLLECTION / "roles/mkkdumprd/tasks/verify.yml").read_text()
    assert "argv: [\"{{ __mkkdumprd_exe }}\", test, --help]" in verify
    assert "'--vm' in __mkkdumprd_test_help.stdout" in verify
    r = subprocess.run([str(mkkdumprd_wrapper(tmp_path)), "test", "--help"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "--vm" in r.stdout, r.stderr
