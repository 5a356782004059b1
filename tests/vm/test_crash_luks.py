"""A dump onto ext4 on LUKS2, the volume key handed to the capture kernel through
CONFIG_CRASH_DM_CRYPT (Linux 6.16+; Debian's kernels do not enable it).

The kernel is built from Debian unstable's linux-source (tests/support/custom_kernel.py,
"x86_64-crypt", all built in) and is first, capture and read-back kernel; cryptsetup 2.8
and the capture image's tools come from sid (storage_tools("sid")). The first kernel
formats the volume (PBKDF2, cheap under TCG), opens it with `--link-vk-to-keyring` into
the user keyring under the description mkkdumprd's loader names, and loads the capture
kernel with the project's own Python loader (its crypt_keys hand-over); the capture image
(`--add crypt`) restores the key through configfs and opens the volume with
`--volume-key-keyring`. A third boot opens it with the passphrase and copies the dump out.
All cryptsetup runs happen inside the guests, on a disk image file.

Passed here in 13 s (three boots; the kernel is small) once the kernel was cached; the
first run builds it (`python -m tests.support.custom_kernel x86_64-crypt`, niced, -j2:
~1460 objects, ~35 min on the loaded 2-core machine). The capture kernel's command line
carries `dmcryptkeys=`; sid's makedumpfile says "kernel version is not supported" for 7.2
and still writes the dump.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mkkdumprd.vmtest import first_stage as fs
from tests.support.custom_kernel import custom_kernel
from tests.support.storage_tools import storage_tools
from tests.vm.conftest import run_mkkdumprd
from tests.vm.harness import disks, vmcore
from tests.vm.harness.first_stage import FIRST_KERNEL_APPEND
from tests.vm.harness.luks import first_stage
from tests.vm.harness.qemu import VM, Drive, VMSpec
from tests.vm.harness.storage import read_back, the_dump

# 13 s under TCG with the kernel cached; the kernel build is minutes (see above).
pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.custom_kernel]

TAG = "MKKDUMPRD-LUKS"
PASSPHRASE = "kdump-test-passphrase"
KEY = "kdump-cryptsetup:vk-"        # mkkdumprd/loader/crypt_keys.py's KEY_PREFIX


def test_ext4_on_luks2_with_crash_dm_crypt(tmp_path: Path) -> None:
    kernel = custom_kernel("x86_64-crypt")
    assert kernel.kmoddir is not None
    tools = storage_tools("sid")
    luks, fsid = str(uuid.uuid4()), str(uuid.uuid4())
    image = tmp_path / "capture.img"
    argv = ["build", "--sysroot", str(tools), "--arch", "x86_64", "--kver", kernel.kver,
            "--kmoddir", str(kernel.kmoddir), "--no-hostonly", "--timeout", "30",
            "--add", "crypt", "--add-drivers", "ext4", "--target", f"local:UUID={fsid}:/crash",
            "-o", str(image)]
    r = run_mkkdumprd(argv)
    assert r.returncode == 0 and image.exists(), f"{' '.join(argv)}:\n{r.stdout}{r.stderr}"

    setup = f"""mount -t configfs configfs /sys/kernel/config
printf %s {PASSPHRASE} >/tmp/pass
mkdir -p /run/cryptsetup
if cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \\
        --uuid {luks} --key-file /tmp/pass /dev/vda &&
    cryptsetup open --key-file /tmp/pass \\
        --link-vk-to-keyring '@u::%logon:{KEY}{luks}' /dev/vda crash &&
    /sbin/mke2fs -q -t ext4 -U {fsid} /dev/mapper/crash &&
    mount -t ext4 /dev/mapper/crash /mnt && mkdir -p /mnt/crash && umount /mnt; then
    echo '{TAG}: volume ready'
else
    echo '{TAG}: setup FAILED'; poweroff -f
fi
cat /proc/keys
"""
    script = fs.init_script([
        setup,
        fs.step("load", fs.load_command(None, ())),
        f'[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || '
        f'{{ echo "{fs.NOT_LOADED_MARKER}"; poweroff -f; }}\n',
    ], crash=True)
    disk = disks.sparse_file(tmp_path / "luks.img", 512)
    first = first_stage(kernel.image, tools, image, tmp_path / "first.img", script)
    spec = VMSpec(kernel.image, first, FIRST_KERNEL_APPEND, drives=(Drive(disk),))
    with VM(spec, tmp_path / "console.log", 600) as vm:
        vm.wait_for(f"{fs.CRASHING_MARKER}|{fs.NOT_LOADED_MARKER}|{TAG}: setup FAILED"
                    "|Kernel panic")
        vm.wait_exit()
        console = vm.console()
    steps = fs.parse_steps(console)
    assert f"{TAG}: volume ready" in console, console[-4000:]
    assert "load" in steps and steps["load"].rc == 0, console[-4000:]
    # No image reader in the guest's python3: the loader says which keys it hands over.
    assert f"handing over the keys of every open LUKS volume ({KEY}{luks})" in \
        steps["load"].output, steps["load"].output
    # The target is inside the volume: a saved dump means the handed-over key opened it.
    assert "could not restore the LUKS volume keys" not in console, console[-4000:]
    assert "kdump: dump saved to" in console, console[-4000:]

    _, dumps = read_back(kernel, tools,
                         f"mkdir -p /run/cryptsetup && printf %s {PASSPHRASE} >/tmp/pass && "
                         "cryptsetup open --key-file /tmp/pass /dev/vda crash && "
                         "mount -t ext4 /dev/mapper/crash /mnt", "/mnt/crash", [disk],
                         tmp_path, binaries=("/sbin/cryptsetup",), modules=())
    d = the_dump(dumps)
    names = {p.name for p in d.iterdir()}
    assert {"vmcore", "vmcore-dmesg.txt"} <= names and "vmcore-incomplete" not in names, \
        f"{sorted(names)}; console:\n{console[-4000:]}"
    vmcore.assert_sysrq_crash(vmcore.dump_dmesg(d / "vmcore"), "vmcore")
