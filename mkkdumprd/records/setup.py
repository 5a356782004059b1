"""What persistent store this machine has for kernel logs, and the ramoops words to add
where it has none (`mkkdumprd pstore setup`, which writes them with `--apply`).

A ramoops region needs memory the firmware and boot loader leave alone across a warm
reset. On x86 a fixed address is taken out of RAM with `memmap=SIZE$ADDR` plus
`ramoops.mem_address/mem_size`: the capture kernel gets these words too and finds the
region by its address. Kernels from 6.11 can reserve one by name (`reserve_mem=SIZE:ALIGN:NAME
ramoops.mem_name=NAME`, the address may move between boots), which a capture kernel cannot
find, so it is proposed only where there is no memmap=.
For the fixed address we take the top MiBs of the highest System RAM range above 4 GiB that
holds no crash kernel reservation. Below 4 GiB the top of RAM is where boot loaders put the
initrd (grub, QEMU's loader: top-down below 4 GiB) and the kernel its crashkernel=
reservation, so a region there would be overwritten at the next boot; there the region
goes at the lowest MiB from 128 MiB up (above the kernel's 16 MiB load address and its
~64 MiB init size; KASLR keeps the decompressed kernel out of memmap= ranges).
`ramoops.pmsg_size` gives kernels with CONFIG_PSTORE_PMSG a /dev/pmsg0 for the capture
image's outcome record (Debian's have none: there the record reaches the region through the
kernel log). No console_size: a console record is left by every warm reboot, and `mkkdumprd
pstore` would take each for a crash. EFI machines already have a store (efi_pstore: dmesg
records only, in NVRAM, small; the capture image does not use it).

`--apply` writes the words through bootconfig/writer.py as the `RAMOOPS` owner (memmap= and
reserve_mem= words are ours only when we wrote them: the administrator may have others), and
where ramoops is a module (Debian: CONFIG_PSTORE_RAM=m, which nothing loads by itself) a
modules-load.d file that loads it at boot; modprobe hands it the ramoops.* words of the
command line. `--remove` takes both away again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from mkkdumprd.bootconfig import writer
from mkkdumprd.bootconfig.owner import Owner, last_wins_conflicts
from mkkdumprd.host import Host
from mkkdumprd.lifecycle.locations import STATE_DIR
from mkkdumprd.quoting import kernel_word

REGION = 1 << 20
RECORD_SIZE = 64 << 10
_IOMEM = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) : (.+)$")
POST_NOTIFIERS = "crash_kexec_post_notifiers"
LOW_SLOT = 128 << 20            # x86 without RAM above 4 GiB: the region's lowest address
MODULES_LOAD = PurePosixPath("/etc/modules-load.d/mkkdumprd-ramoops.conf")
_MODULES_LOAD_TEXT = ("# Written by `mkkdumprd pstore setup --apply`: load ramoops at boot; "
                      "it reads the\n# ramoops.* words of the kernel command line.\nramoops\n")

RAMOOPS = Owner(
    label="ramoops", command="mkkdumprd pstore setup --apply",
    word=re.compile(r'(?<!\S)(?:memmap=|reserve_mem=|ramoops\.)(?:"[^"\n]*"|\S)*'),
    record=STATE_DIR / "ramoops-applied", grub_cfg=writer.GRUB_D / "mkkdumprd-ramoops.cfg",
    token=lambda w: w, to_word=lambda t: t,
    conflicts=last_wins_conflicts(lambda w: w.startswith("ramoops.")),
    shared=re.compile(r"(?:memmap|reserve_mem)="))


@dataclass(frozen=True)
class PstoreState:
    backend: str                 # the registered pstore backend, "" when none
    efi: bool                    # booted through EFI
    ramoops_words: tuple[str, ...]   # ramoops.* words of the running command line


def read_state(host: Host) -> PstoreState:
    backend = (host.read_optional("/sys/module/pstore/parameters/backend") or "").strip()
    cmdline = host.read_optional("/proc/cmdline") or ""
    return PstoreState(backend="" if backend == "(null)" else backend,
                       efi=host.is_dir("/sys/firmware/efi"),
                       ramoops_words=tuple(w for w in cmdline.split()
                                           if w.startswith("ramoops.")))


def _fixed_address(iomem: str) -> int | None:
    ram: list[tuple[int, int]] = []
    crash: list[tuple[int, int]] = []
    for line in iomem.splitlines():
        m = _IOMEM.match(line.strip())
        if m is None:
            continue
        start, end, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
        if name == "System RAM" and not line.startswith(" "):
            ram.append((start, end))
        elif name == "Crash kernel":
            crash.append((start, end))
    if not ram or all(s == 0 and e == 0 for s, e in ram):
        return None                # addresses hidden (not root): cannot propose one

    def free(addr: int, start: int, end: int) -> bool:
        return (start <= addr and addr + REGION - 1 <= end
                and not any(cs <= addr + REGION - 1 and addr <= ce for cs, ce in crash))

    for start, end in sorted((r for r in ram if r[0] >= 1 << 32), key=lambda r: r[1],
                             reverse=True):
        addr = ((end + 1 - 16 * REGION) // REGION) * REGION
        if free(addr, start, end):
            return addr
    for start, end in sorted(r for r in ram if r[0] < 1 << 32):
        addr = max(LOW_SLOT, -(-start // REGION) * REGION)
        while addr + REGION - 1 <= min(end, (1 << 32) - 1):
            if free(addr, start, end):
                return addr
            addr += REGION
    return None


def proposal(host: Host, kernel_release: str, arch: str = "x86_64"
             ) -> tuple[list[str], list[str]]:
    """(kernel command line words, notes) for a ramoops region on this machine.

    x86 gets a fixed address (memmap=$): the capture kernel finds the region only by its
    address, so only that form carries the capture image's outcome record too. Elsewhere
    6.11+ kernels get reserve_mem=, which keeps the first kernel's panics only.
    """
    notes: list[str] = []
    major, minor = (int(x) for x in [*re.findall(r"[0-9]+", kernel_release), "0", "0"][:2])
    common = [f"ramoops.record_size={RECORD_SIZE}", f"ramoops.pmsg_size={RECORD_SIZE}",
              "ramoops.max_reason=1"]
    if arch in ("x86_64", "i686", "i386"):
        addr = _fixed_address(host.read_optional("/proc/iomem") or "")
        if addr is None:
            return [], ["cannot pick an address: /proc/iomem shows no usable System RAM "
                        "(run as root)"]
        words = [f"memmap={REGION >> 20}M${addr:#x}", f"ramoops.mem_address={addr:#x}",
                 f"ramoops.mem_size={REGION:#x}", *common]
        where = ("the top of the highest RAM range above 4 GiB without the crash kernel"
                 if addr >= 1 << 32 else "low, clear of the kernel image and of the top of "
                 "RAM below 4 GiB, where boot loaders put the initrd")
        notes.append(f"memmap=$ takes {REGION >> 20} MiB at {addr:#x} out of RAM ({where}); "
                     "in /etc/default/grub the $ must be written \\\\\\$ (--apply does)")
        notes.append("max_reason=1 keeps panics only; the capture image loads ramoops with "
                     "max_reason=4 itself so that its outcome record is kept")
    elif (major, minor) >= (6, 11):
        words = ["reserve_mem=1M:4096:kdump_oops", "ramoops.mem_name=kdump_oops", *common]
        notes.append("reserve_mem= (Linux 6.11+) lets the kernel pick the region, which may "
                     "move between boots; the capture kernel cannot find it by name, so it "
                     "keeps the first kernel's panics, not the capture image's outcome record")
    else:
        return [], [f"no command line form for {arch} before Linux 6.11: describe a "
                    "ramoops region in the device tree (reserved-memory, compatible "
                    "\"ramoops\")"]
    return [kernel_word(w) for w in words], notes


def post_notifiers_warning(host: Host) -> str | None:
    """A warning when panic notifiers and kmsg dumpers run before kdump."""
    value = (host.read_optional(f"/sys/module/kernel/parameters/{POST_NOTIFIERS}") or "").strip()
    cmdline = (host.read_optional("/proc/cmdline") or "").split()
    on_cmdline = any(w == POST_NOTIFIERS or (w.startswith(f"{POST_NOTIFIERS}=")
                                             and w.split("=", 1)[1] in ("1", "y", "Y", "on"))
                     for w in cmdline)
    if value != "Y" and not on_cmdline:
        return None
    return (f"{POST_NOTIFIERS} is set: the kernel runs panic notifiers and pstore's kmsg "
            "dump before kdump, which keeps a pstore record of the panic but makes the "
            "kexec into the capture kernel less reliable (some platforms then fail to "
            "start it); without it kdump runs first and the capture image's outcome record "
            "is what pstore keeps")


def recorded_words(host: Host) -> tuple[str, ...]:
    """The words `--apply` wrote last under this root (its record)."""
    return writer.applied_record(RAMOOPS, host)[0]


def setup_words(host: Host, kernel_release: str, arch: str) -> tuple[list[str], list[str]]:
    """The words `pstore setup` proposes and `--apply` writes: the ones it wrote before when
    it did (the region is in use now, so /proc/iomem no longer shows it as RAM and a fresh
    proposal would move it), else `proposal()`."""
    recorded = recorded_words(host)
    if recorded:
        return list(recorded), ["the region `pstore setup --apply` wrote before is kept"]
    return proposal(host, kernel_release, arch)


def _ramoops_is_module(host: Host, kernel_release: str) -> bool:
    """Whether `kernel_release` has ramoops as a loadable module (modules.dep lists it):
    then something must load it at boot. Builtin or unknown: no."""
    dep = host.read_optional(f"/lib/modules/{kernel_release}/modules.dep") or ""
    return re.search(r"(^|/)ramoops\.ko(\.[a-z]+)?:", dep, re.M) is not None


def plan_apply(host: Host, words: list[str], kernel_release: str,
               force: bool = False) -> writer.Plan:
    """The boot configuration change of `--apply` (nothing is written): the words, and the
    modules-load.d file where ramoops is a module of `kernel_release`."""
    plan = writer.plan_write(RAMOOPS, host, words, force)
    if (plan.kept and not force) or not _ramoops_is_module(host, kernel_release):
        return plan
    old = writer.read(host, MODULES_LOAD) if host.is_file(MODULES_LOAD) else None
    if old == _MODULES_LOAD_TEXT:
        return plan
    notes = tuple(n for n in plan.notes if n != writer.NOTHING_TO_DO)
    return replace(plan, changes=(*plan.changes, writer.Change(MODULES_LOAD, old,
                                                                _MODULES_LOAD_TEXT)),
                   notes=(*notes, f"ramoops is a module of {kernel_release}: "
                          f"{MODULES_LOAD.name} loads it at boot"))


def plan_remove(host: Host) -> writer.Plan:
    """The change of `--remove`: the words `--apply` recorded, and its modules-load.d file."""
    plan = writer.plan_remove(RAMOOPS, host)
    if not host.is_file(MODULES_LOAD):
        return plan
    return replace(plan, changes=(*plan.changes, writer.Change(
        MODULES_LOAD, writer.read(host, MODULES_LOAD), None)))
