"""What persistent store this machine has for kernel logs, and the ramoops words to add
where it has none (`mkkdumprd pstore setup`).

A ramoops region needs memory the firmware and boot loader leave alone across a warm
reset. On x86 a fixed address is taken out of RAM with `memmap=SIZE$ADDR` plus
`ramoops.mem_address/mem_size`: the capture kernel gets these words too and finds the
region by its address. Kernels from 6.11 can reserve one by name (`reserve_mem=SIZE:ALIGN:NAME
ramoops.mem_name=NAME`, the address may move between boots), which a capture kernel cannot
find, so it is proposed only where there is no memmap=.
For the fixed address we take the top MiBs of the highest System RAM range of /proc/iomem
that holds no crash kernel reservation (boot loaders put the initrd at the top of RAM
below 4 GiB, so a range above 4 GiB is preferred). EFI machines already have a store
(efi_pstore: dmesg records only, in NVRAM, small).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mkkdumprd.host import Host
from mkkdumprd.quoting import kernel_word

REGION = 1 << 20
RECORD_SIZE = 64 << 10
_IOMEM = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) : (.+)$")
POST_NOTIFIERS = "crash_kexec_post_notifiers"


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
    for start, end in sorted(ram, key=lambda r: (r[1] >= 1 << 32, r[1]), reverse=True):
        addr = ((end + 1 - 16 * REGION) // REGION) * REGION
        if addr < max(start, 64 * REGION):
            continue
        if any(cs <= addr + REGION - 1 and addr <= ce for cs, ce in crash):
            continue
        return addr
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
    common = [f"ramoops.record_size={RECORD_SIZE}", "ramoops.max_reason=1"]
    if arch in ("x86_64", "i686", "i386"):
        addr = _fixed_address(host.read_optional("/proc/iomem") or "")
        if addr is None:
            return [], ["cannot pick an address: /proc/iomem shows no usable System RAM "
                        "(run as root)"]
        words = [f"memmap={REGION >> 20}M${addr:#x}", f"ramoops.mem_address={addr:#x}",
                 f"ramoops.mem_size={REGION:#x}", *common]
        notes.append(f"memmap=$ takes {REGION >> 20} MiB at {addr:#x} out of RAM (the top of the "
                     "highest RAM range without the crash kernel); in /etc/default/grub "
                     "the $ must be written \\$")
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
