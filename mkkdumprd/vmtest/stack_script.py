"""The guest's shell for a scratch layout (scratch_layout.py): build it, and read it back.

`prepare` runs in the first stage before the load (first_stage.py): on the blank scratch
disks it creates the stack bottom up with this machine's own mdadm/lvm/cryptsetup (md
array with the host's name and UUID, PVs/VG/LV with the host's names — thin LVs in a pool
— LUKS with the host's UUID and dm name, its volume key linked into the user keyring
under the description the loader hands to the capture kernel), makes the filesystem with
the target's UUID and label, for btrfs the subvolume at the same id, and the dump path.
Layers below a LUKS volume stay open (its key is what the loader hands over); the rest is
taken down so the capture image sets it up from the disks as it would after a real crash.

`readback` runs in a second boot (readback.py): assembles the stack again, mounts the
filesystem read-only and writes the dump path's tree as a tar onto a raw disk.

Every value goes through `quoting.shell_word`. The LUKS passphrase is a fixed word: the
scratch volume holds nothing but the test dump.
"""

from __future__ import annotations

from collections.abc import Mapping

from mkkdumprd.loader.crypt_keys import KEY_PREFIX
from mkkdumprd.quoting import shell_word as q
from mkkdumprd.storage.stack import Kind, Layer
from mkkdumprd.vmtest.scratch_layout import MKFS, Layout, node

MOUNT = "/mnt/scratch"
PASSFILE = "/tmp/mkkdumprd-scratch-pass"
PASSPHRASE = "mkkdumprd-scratch"
THIN_POOL = "mkkdumprd_pool"
THIN_SIZE = "900M"
LUKS_OPTS = "--pbkdf pbkdf2 --pbkdf-force-iterations 1000"

# sbin first: the storage tools, not busybox's applets of the same name (mke2fs).
_HEAD = f"""export PATH=/usr/sbin:/sbin:/usr/bin:/bin
mkdir -p /run/lock/lvm /run/cryptsetup {MOUNT}
"""


# name -> the tool's path in the guest. Called by path: busybox's sh may prefer its own
# applet of the same name (mke2fs) over PATH.
Tools = Mapping[str, str]


def _members(layer: Layer) -> str:
    return " ".join(q(node(b)) for b in layer.below)


def _create(layer: Layer, made_vgs: set[str], t: Tools) -> list[str]:
    if layer.kind is Kind.MD:
        uuid = f" --uuid={q(layer.md_uuid)}" if layer.md_uuid else ""
        return [f"{q(t['mdadm'])} --create {q(node(layer))} --run --assume-clean --metadata=1.2 "
                f"--level={q(layer.md_level)} --raid-devices={len(layer.below)}{uuid} "
                f"{_members(layer)}"]
    if layer.kind is Kind.LVM:
        out = []
        if layer.vg not in made_vgs:
            made_vgs.add(layer.vg)
            out += [f"{q(t['lvm'])} pvcreate -y -ff {q(node(b))}" for b in layer.below]
            out.append(f"{q(t['lvm'])} vgcreate {q(layer.vg)} {_members(layer)}")
        if layer.thin:
            pool = q(f"{layer.vg}/{THIN_POOL}")
            out += [f"{q(t['lvm'])} lvcreate -y -l 90%FREE -T {pool}",
                    f"{q(t['lvm'])} lvcreate -y -V {THIN_SIZE} -T {pool} -n {q(layer.lv)}"]
        else:
            out.append(f"{q(t['lvm'])} lvcreate -y -l 100%FREE -n {q(layer.lv)} {q(layer.vg)}")
        return out
    if layer.kind is Kind.CRYPT:
        below = q(node(layer.below[0]))
        key = q(f"@u::%logon:{KEY_PREFIX}{layer.luks_uuid}")
        return [f"{q(t['cryptsetup'])} luksFormat -q --type {layer.luks.lower()} {LUKS_OPTS} "
                f"--uuid {q(layer.luks_uuid)} --key-file {PASSFILE} {below}",
                f"{q(t['cryptsetup'])} open --key-file {PASSFILE} --link-vk-to-keyring {key} "
                f"{below} {q(layer.dm_name)}"]
    return []


def _mkfs(lay: Layout, t: Tools) -> str:
    devs = " ".join(q(d) for d in lay.fs_devices())
    label = f" -L {q(lay.label)}" if lay.label else ""
    if lay.fstype == "xfs":
        return f"{q(t['mkfs.xfs'])} -f -q -m uuid={q(lay.fs_uuid)}{label} {devs}"
    if lay.fstype == "btrfs":
        return f"{q(t['mkfs.btrfs'])} -f -q -U {q(lay.fs_uuid)}{label} {devs}"
    return f"{q(t[MKFS[lay.fstype]])} -q -F -t {lay.fstype} -U {q(lay.fs_uuid)}{label} {devs}"


def _teardown(lay: Layout, t: Tools) -> list[str]:
    out = []
    for x in reversed(lay.layers()):
        if x.kind is Kind.CRYPT:
            break
        if x.kind is Kind.LVM:
            out.append(f"{q(t['lvm'])} vgchange -an {q(x.vg)}")
        elif x.kind is Kind.MD:
            out.append(f"{q(t['mdadm'])} --stop {q(node(x))}")
    return list(dict.fromkeys(out))


def _passfile(lay: Layout) -> list[str]:
    if any(x.kind is Kind.CRYPT for x in lay.layers()):
        return [f"printf %s {PASSPHRASE} > {PASSFILE}"]
    return []


def _scan(lay: Layout, t: Tools) -> list[str]:
    return [f"{q(t['btrfs'])} device scan"] if lay.stack is not None and lay.stack.extra else []


def prepare(lay: Layout, t: Tools) -> str:
    """/prepare.sh of the first stage: the stack, the filesystem, the dump path."""
    made: set[str] = set()
    lines = ["set -e", *_passfile(lay)]
    for x in lay.layers():
        lines += _create(x, made, t)
    lines.append(_mkfs(lay, t))
    lines += _scan(lay, t)
    lines.append(f"mount -t {lay.fstype} {q(lay.fs_devices()[0])} {MOUNT}")
    base = MOUNT
    if lay.subvolid is not None and lay.subvolume:
        for i in range(256, lay.subvolid):
            lines.append(f"{q(t['btrfs'])} subvolume create {MOUNT}/mkkdumprd-filler-{i}")
        sub = f"{MOUNT}/{lay.subvolume}"
        parent = sub.rsplit("/", 1)[0]
        lines += [f"mkdir -p {q(parent)}", f"{q(t['btrfs'])} subvolume create {q(sub)}"]
        base = sub
    lines += [f"mkdir -p {q(base + '/' + lay.path.strip('/'))}", f"umount {MOUNT}", "sync",
              *_teardown(lay, t), "sync"]
    return _HEAD + "\n".join(lines) + "\n"


def _activate(lay: Layout, t: Tools) -> list[str]:
    out: list[str] = []
    for x in lay.layers():
        if x.kind is Kind.MD:
            out.append(f"{q(t['mdadm'])} --assemble --run {q(node(x))} {_members(x)}")
        elif x.kind is Kind.LVM:
            out.append(f"{q(t['lvm'])} vgchange -ay {q(x.vg)}")
        elif x.kind is Kind.CRYPT:
            out.append(f"{q(t['cryptsetup'])} open --readonly --key-file {PASSFILE} "
                       f"{q(node(x.below[0]))} {q(x.dm_name)}")
    return list(dict.fromkeys(out))


def readback(lay: Layout, tar_device: str, t: Tools) -> str:
    """The read-back boot's commands: set the stack up, mount read-only, tar the dump
    path's tree onto `tar_device`. Exits non-zero at the first failure."""
    opts = "ro" + (f",subvolid={lay.subvolid}" if lay.subvolid is not None else "")
    dev = q(lay.fs_devices()[0])
    mount = f"mount -t {lay.fstype} -o {opts} {dev} {MOUNT}"
    if lay.fstype == "xfs":      # a log the capture kernel left dirty: read without replay
        mount += f" || mount -t xfs -o ro,norecovery {dev} {MOUNT}"
    lines = ["set -e", *_passfile(lay), *_activate(lay, t), *_scan(lay, t), mount,
             f"tar -C {q(MOUNT + '/' + lay.path.strip('/'))} -cf {q(tar_device)} .", "sync"]
    return _HEAD + "\n".join(lines) + "\n"
