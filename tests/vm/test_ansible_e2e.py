"""The collection end to end: ansible-playbook over ssh configures a running QEMU guest for an
ssh dump target on this machine's private sshd, the guest loads its capture kernel itself
(`mkkdumprd start`, the project's loader), is crashed, and its dump arrives.

The guest is a full Debian bookworm: a debootstrapped root (the cached base of the fleet
test) with openssh-server, the VM tests' Debian kernel (its own initramfs-tools initrd,
modules limited to the disk's) and this checkout's .deb installed with apt, made into an
ext4 image with `mke2fs -d` (nothing is mounted here) and booted with QEMU TCG directly
(-kernel/-initrd). Its only network is QEMU user networking with restrict=on: a hostfwd
from 127.0.0.1:PORT to its sshd (Ansible's connection) and a guestfwd making the private
sshd its 10.0.2.100:22.

crashkernel=256M is on the guest's command line from the first boot, so the play sets
kdump_auto_reset_crashkernel: false (the variable that skips the role's crashkernel step):
the guest has no boot loader to write into, and no reboot is needed.

The dump server in the inventory (`dumpserver`) is the guest itself through the same
forward: the role's once-per-play tasks authorise the dump key there and read the server's
host key from there (mkkdumprd_ssh_host_key, a copy of the private sshd's public host key
placed in the root). The private sshd is what the capture kernel really logs in to; it
accepts its own client key, which the root carries as the dump key (kdump_sshkey), so the
role's "Generate the dump key" finds it in place.

The crash command runs in the guest only: Ansible's key is authorised nowhere but in the
guest, and the command first checks the guest's own marker on /proc/cmdline.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.ansible_tools import collections_path, environment, recap, run, tool
from tests.support.debian_kernel import Kernel
from tests.support.debian_root import CACHE, Recipe, apt, inside, unpack
from tests.support.debian_root import run as run_checked
from tests.support.packages import SYSTEM_PATH, build_deb
from tests.vm.harness import vmcore
from tests.vm.harness.qemu import VM, VMSpec
from tests.vm.servers import GUEST_SERVER_IP, SshServer, free_port

# The fleet test's recipe: one cached base (python3, kmod, initramfs-tools, makedumpfile...).
RECIPE = Recipe("bookworm", include=("python3", "python3-venv", "libarchive13",
                                     "busybox-static", "makedumpfile", "kmod", "linux-base",
                                     "initramfs-tools"))
MARKER = "mkkdumprd_e2e=guest"
APPEND = f"root=/dev/vda rw console=ttyS0 crashkernel=256M panic=-1 {MARKER}"
SERVER_KEY = "/etc/mkkdumprd-e2e/dump-server-host-key.pub"
VM_TIMEOUT = 3000.0

PLAYBOOK = """\
- name: Roll out kdump with an ssh target
  hosts: fleet
  gather_facts: false
  vars:
    kdump_target: {type: ssh, location: "root@@ADDR@"}
    kdump_ssh_server: dumpserver
    kdump_path: "@PATH@"
    kdump_auto_reset_crashkernel: false
    mkkdumprd_ssh_host_key: @KEY@
  roles:
    - mkkdumprd.kdump.mkkdumprd
"""


def _guest_root(tmp_path: Path, kernel: Kernel, srv: SshServer, ansible_pub: str) -> Path:
    root = unpack(RECIPE, tmp_path / "root")
    rc = root / "usr/sbin/policy-rc.d"
    rc.write_text("#!/bin/sh\nexit 101\n")         # nothing starts in the chroot
    rc.chmod(0o755)
    # Only what mounts the root goes into the initrd (MODULES=most makes it slow to boot).
    conf = root / "etc/initramfs-tools/initramfs.conf"
    conf.write_text(conf.read_text().replace("MODULES=most", "MODULES=list"))
    with open(root / "etc/initramfs-tools/modules", "a") as f:
        f.write("virtio_pci\nvirtio_blk\next4\n")
    (kdeb,) = sorted((CACHE / "debs").glob(f"linux-image-{kernel.kver}_*.deb"))[-1:]
    shutil.copy(kdeb, root / "tmp")
    # python3-apt: the role's package task (Ansible's apt module) needs it; the guest has
    # no way to fetch it.
    apt(root, RECIPE, "install", "systemd-sysv", "udev", "openssh-server", "python3-apt",
        f"/tmp/{kdeb.name}")
    deb = build_deb(tmp_path / "deb")
    shutil.copy(deb, root / "tmp")
    apt(root, RECIPE, "install", f"/tmp/{deb.name}")
    inside(root, "systemctl", "enable", "systemd-networkd.service")
    rc.unlink()
    for junk in root.glob("tmp/*.deb"):
        junk.unlink()
    for p in (root / "var/cache/apt/archives").glob("*.deb"):
        p.unlink()

    (root / "etc/hostname").write_text("mkkdumprd-e2e\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw 0 1\n")
    (root / "etc/systemd/network/10-e2e.network").write_text(
        "[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n")
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(ansible_pub)
    assert srv.keys is not None
    shutil.copy(srv.keys.client_key, ssh / "kdump_id_rsa")
    (ssh / "kdump_id_rsa").chmod(0o600)
    (ssh / "kdump_id_rsa.pub").write_text(srv.keys.client_public + "\n")
    key = root / SERVER_KEY.lstrip("/")
    key.parent.mkdir(parents=True)
    key.write_text(srv.keys.host_public + "\n")
    return root


def _disk(root: Path, out: Path) -> Path:
    run_checked(["mke2fs", "-q", "-t", "ext4", "-F", "-L", "root", "-d", str(root), str(out),
                 "4G"], env={"PATH": SYSTEM_PATH})
    return out


@pytest.mark.slow
@pytest.mark.fleet  # 16.6 min here under load (996 s): root and image 105 s, guest boot
# 123 s (TCG), first play done at 513 s, second play, status, crash and dump to 886 s
def test_playbook_configures_guest_and_its_crash_dump_arrives(kernel: Kernel,
                                                              tmp_path: Path) -> None:
    started = time.monotonic()
    ansible_key = tmp_path / "ansible_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ansible_key)],
                   check=True)
    dumps = tmp_path / "dumps"
    with SshServer(tmp_path / "sshd").start() as srv:
        root = _guest_root(tmp_path, kernel, srv, ansible_key.with_suffix(".pub").read_text())
        (kver,) = [p.name for p in (root / "lib/modules").iterdir()]
        boot = tmp_path / "boot"
        boot.mkdir()
        vmlinuz = shutil.copy(root / f"boot/vmlinuz-{kver}", boot)
        initrd = shutil.copy(root / f"boot/initrd.img-{kver}", boot)
        disk = _disk(root, tmp_path / "root.img")
        shutil.rmtree(root)
        prepared = time.monotonic() - started

        port = free_port()
        spec = VMSpec(Path(vmlinuz), Path(initrd), APPEND, memory_mb=1536,
                      guestfwd=(srv.guestfwd(22),), hostfwd=(f"tcp:127.0.0.1:{port}-:22",),
                      extra_args=("-drive", f"file={disk},format=raw,if=virtio,cache=unsafe"))
        inventory = tmp_path / "hosts.ini"
        inventory.write_text(
            f"[fleet]\nguest ansible_host=127.0.0.1 ansible_port={port}\n"
            f"[dumpservers]\ndumpserver ansible_host=127.0.0.1 ansible_port={port}\n"
            "[all:vars]\nansible_user=root\n"
            f"ansible_ssh_private_key_file={ansible_key}\n"
            "ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=no -o IdentitiesOnly=yes'\n"
            "ansible_python_interpreter=/usr/bin/python3\n")
        playbook = tmp_path / "site.yml"
        playbook.write_text(PLAYBOOK.replace("@ADDR@", GUEST_SERVER_IP)
                            .replace("@PATH@", str(dumps)).replace("@KEY@", SERVER_KEY))
        env = environment(collections_path(tmp_path))
        env["ANSIBLE_TIMEOUT"] = "60"
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(tmp_path / "ansible-cp")

        with VM(spec, tmp_path / "console.log", VM_TIMEOUT) as vm:
            vm.wait_for(r"mkkdumprd-e2e login:")
            booted = vm.elapsed
            ping = run([tool("ansible"), "-i", str(inventory), "guest", "-m", "ping"], env,
                       timeout=300)
            assert ping.returncode == 0, ping.stdout + ping.stderr

            first = run([tool("ansible-playbook"), "-i", str(inventory), str(playbook)], env,
                        timeout=1800)
            stats = recap(first.stdout)
            assert first.returncode == 0, first.stdout[-10000:] + first.stderr[-3000:]
            assert stats["guest"]["failed"] == 0 and stats["guest"]["changed"] > 0, stats
            played = vm.elapsed

            second = run([tool("ansible-playbook"), "-i", str(inventory), str(playbook)], env,
                         timeout=1800)
            stats = recap(second.stdout)
            assert second.returncode == 0, second.stdout[-10000:]
            assert all(s["changed"] == 0 and s["failed"] == 0 for s in stats.values()), \
                (stats, second.stdout[-10000:])

            status = run([tool("ansible"), "-i", str(inventory), "guest", "-m", "command",
                          "-a", "mkkdumprd status"], env, timeout=300)
            assert status.returncode == 0, status.stdout + status.stderr
            print(status.stdout)

            # In the guest only: its marker on /proc/cmdline, then the crash, detached so
            # that Ansible's connection returns first.
            crash = run([tool("ansible"), "-i", str(inventory), "guest", "-B", "60", "-P", "0",
                         "-m", "shell", "-a",
                         f"grep -qw {MARKER} /proc/cmdline && sleep 3 && "
                         "echo c > /proc/sysrq-trigger"], env, timeout=300)
            assert crash.returncode == 0, crash.stdout + crash.stderr
            vm.wait_exit()
            console = vm.console()
            total = vm.elapsed
    print(f"prepared {prepared:.0f} s, booted {booted:.0f} s, first play done at "
          f"{played:.0f} s, VM ended at {total:.0f} s, all {time.monotonic() - started:.0f} s")

    found = sorted(p.name for p in dumps.iterdir()) if dumps.is_dir() else []
    assert len(found) == 1 and found[0].startswith("10.0.2.15-"), \
        f"dump dirs {found}; console:\n{console[-5000:]}"
    d = dumps / found[0]
    names = {p.name for p in d.iterdir()}
    assert {"vmcore-dmesg.txt", "vmcore.flat"} <= names, (names, console[-5000:])
    assert not any(n.endswith(".incomplete") for n in names), names
    vmcore.assert_sysrq_crash((d / "vmcore-dmesg.txt").read_text(errors="replace"),
                              "vmcore-dmesg.txt")
    restored = tmp_path / "vmcore"
    with open(d / "vmcore.flat", "rb") as flat:
        subprocess.run(["makedumpfile", "-R", str(restored)], stdin=flat, check=True,
                       capture_output=True, timeout=300)
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(restored), "vmcore restored from vmcore.flat")
