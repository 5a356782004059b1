"""How many CPUs the capture kernel brings up (`nr_cpus=N` on its command line).

The capture script runs a zlib makedumpfile (-c) with `--num-threads N` when N CPUs come up
(assemble/collector_threads.py), so a dump of a large machine compresses on N CPUs. N is
the smallest of:

- the CPUs online in the running kernel (the capture kernel runs on the same machine);
- the arch's `cmdline.max_cpus` (data/arch/*.toml): 1 everywhere the project has not
  crashed a kernel with more than one CPU in the capture kernel and seen it dump (each
  file says why), and on x86_64 too for now: there the multi-CPU dump works, but the
  measurement in QEMU showed no gain (x86_64.toml says the figures; 32, the most the
  capture script gives makedumpfile, turns it on);
- what the crashkernel= reservation holds: every CPU beyond the first costs the arch's
  per-CPU term (`estimate.percpu_kib`, with the estimate's 20 % margin), and the CPUs
  are only added while the estimate for the loaded kernel and image at one CPU plus that
  cost stays within the reservation.

The administrator's own `nr_cpus=` word (load --append, or an APPEND variable of the files
loader/cmdline_settings.py reads, e.g. CMDLINE_APPEND="nr_cpus=1" in
/etc/mkkdumprd/cmdline.conf) is kept as written: no choice is made then.

x86_64 (the arch's `cmdline.disable_boot_cpu`): with N > 1 (chosen, or the
administrator's) the capture kernel also gets
`disable_cpu_apicid=<the boot CPU's initial APIC ID>`, as Fedora's kdumpctl adds it: the
kernel then never sends INIT to the boot processor from an AP, which resets or hangs some
machines (arch/x86/kernel/apic/apic.c). When the crash happened on the boot CPU itself the
capture kernel runs there and the word changes nothing; on any other CPU it means one CPU
fewer than N comes up.

Standard library only: the loader imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mkkdumprd.host import Host
from mkkdumprd.loader.cmdline import Word
from mkkdumprd.loader.cmdline_settings import is_arch_default

# The capture script's cap on --num-threads (data/templates/collector.sh.j2).
THREADS_MAX = 32
# crashkernel/recommend.py: MARGIN_PERCENT, applied to the per-CPU term as to every term.
MARGIN_PERCENT = 20
ORIGIN = "chosen by mkkdumprd (loader/capture_cpus.py)"


@dataclass(frozen=True)
class CpuChoice:
    count: int
    why: str


def count_cpu_list(text: str) -> int:
    """CPUs in a sysfs CPU list ("0-3,5"); ValueError when it is not one."""
    n = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        n += int(hi) - int(lo) + 1 if hi else 1
    if n < 1:
        raise ValueError(f"no CPUs in {text!r}")
    return n


def online_cpus(host: Host) -> int:
    """CPUs online in the running kernel; 1 when that cannot be read."""
    text = host.read_optional("/sys/devices/system/cpu/online")
    try:
        return count_cpu_list(text) if text else 1
    except ValueError:
        return 1


def boot_cpu_apicid(host: Host) -> int | None:
    """The boot CPU's (processor 0's) initial APIC ID from /proc/cpuinfo (x86)."""
    text = host.read_optional("/proc/cpuinfo") or ""
    for block in text.split("\n\n"):
        fields = {k.strip(): v.strip() for k, _, v in
                  (line.partition(":") for line in block.splitlines())}
        if fields.get("processor") != "0":
            continue
        for key in ("initial apicid", "apicid"):
            if fields.get(key, "").isdigit():
                return int(fields[key])
        return None
    return None


def choose(*, online: int, arch_max: int, reserved: int,
           needed_one: Callable[[], int | None], percpu: int) -> CpuChoice:
    """N, and why it is not larger; `needed_one()` is the estimate at one CPU (None: not
    known, and then no CPU beyond the first is added), asked only when N could be > 1."""
    if arch_max <= 1:
        return CpuChoice(1, "the arch allows one capture CPU (data/arch: cmdline.max_cpus)")
    cap, why = min((online, f"{online} CPU(s) online"),
                   (arch_max, f"the arch allows {arch_max}"),
                   (THREADS_MAX, f"makedumpfile gets at most {THREADS_MAX} threads"))
    if cap <= 1:
        return CpuChoice(1, why)
    need = needed_one()
    if need is None:
        return CpuChoice(1, "the capture image's memory need is not known here")
    per = percpu * (100 + MARGIN_PERCENT) // 100
    fits = 1 + max(0, reserved - need) // per
    if fits < cap:
        return CpuChoice(fits, f"the {reserved >> 20} MiB reservation holds {fits} "
                         f"({need >> 20} MiB needed at one CPU, {per >> 10} KiB per CPU "
                         "more)")
    return CpuChoice(cap, why)


def _nr_cpus(word: Word) -> int | None:
    name, _, value = word.text.partition("=")
    if name.replace("-", "_") != "nr_cpus":
        return None
    return int(value) if value.isdigit() else None


def cpu_words(words: Sequence[Word], host: Host, *, arch_max: int, disable_boot_cpu: bool,
              reserved: int, percpu: int,
              needed_one: Callable[[], int | None]) -> list[Word]:
    """`words` with the arch default's nr_cpus= replaced by the choice; an administrator's
    nr_cpus= is kept as written. Either way, more than one CPU on an arch with
    `disable_boot_cpu` (x86) adds disable_cpu_apicid= of the boot CPU, or, when that
    cannot be read, the arch default stays at one CPU. Arches without nr_cpus= in their
    defaults (ppc64le's maxcpus=) are left alone."""
    out = list(words)
    mine = [i for i, w in enumerate(out) if _nr_cpus(w) is not None]
    if not mine:
        return out
    i = mine[-1]                        # the kernel takes the last one
    count = _nr_cpus(out[i]) or 1
    if is_arch_default(out[i]):
        choice = choose(online=online_cpus(host), arch_max=arch_max, reserved=reserved,
                        needed_one=needed_one, percpu=percpu)
        if choice.count > 1 and disable_boot_cpu and boot_cpu_apicid(host) is None:
            return out                  # cannot keep the boot CPU out: one CPU, as before
        count = choice.count
        out[i] = Word(f"nr_cpus={count}", f"{ORIGIN}: {choice.why}")
    if count > 1 and disable_boot_cpu and \
            not any(w.text.startswith("disable_cpu_apicid=") for w in out):
        apicid = boot_cpu_apicid(host)
        if apicid is not None:
            out.append(Word(f"disable_cpu_apicid={apicid}", f"{ORIGIN}: keeps the boot CPU "
                            "out of the capture kernel (no INIT to the BSP)"))
    return out


def rough_need(kernel_runtime: int, image_bytes: int, *, dynamic: int, percpu: int) -> int:
    """The estimate at one CPU from what a bare interpreter can read (no image reader):
    crashkernel/recommend.py's terms with the unpacked image taken as 3x its compressed
    file (our zstd images unpack to ~2.5x) and makedumpfile's bitmaps at their 32 MiB cap:
    above the real estimate, so it adds CPUs later, never sooner."""
    mib = 1 << 20
    subtotal = (kernel_runtime + dynamic + 4 * image_bytes + 12 * mib + 32 * mib + percpu)
    subtotal += subtotal * 64 // (4096 - 64)          # memmap of the reservation
    return subtotal + subtotal * MARGIN_PERCENT // 100 + 16 * mib
