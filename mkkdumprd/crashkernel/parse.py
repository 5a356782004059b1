"""crashkernel= evaluated exactly as kernel/crash_reserve.c does it (v6.x, incl. ,cma).

The kernel works on the raw command line string: it finds every "crashkernel=" with
strstr() (so even "foo.crashkernel=" counts), classifies each word by its ending (",high",
",low", ",cma" or none), and keeps the last of each class. The plain form wins; ,high and
,low are only looked at when there is no plain word and the arch has the generic
reservation. Ranges are matched against RAM rounded up to 128 MiB; the final size check
uses the unrounded RAM. The reasons below are the kernel's own pr_warn()/pr_info() texts.
"""

from __future__ import annotations

from dataclasses import dataclass

from mkkdumprd.arch import ArchInfo
from mkkdumprd.crashkernel.size import MiB, memparse_checked, round_up, strtoull

_NAME = "crashkernel="
_SUFFIXES = (",high", ",low", ",cma")
_ROUND = 128 * MiB
_IO_TLB_SHIFT = 11        # swiotlb slab = 2 KiB (include/linux/swiotlb.h)
_IO_TLB_SEGSIZE = 128
_IO_TLB_DEFAULT = 64 * MiB
_PHYS_MAX = 1 << 52       # no supported arch addresses more physical memory


@dataclass(frozen=True)
class Reservation:
    size: int                 # bytes (the ,high size when high is set)
    offset: int | None        # @offset, None when the kernel chooses
    high: bool                # came from crashkernel=X,high
    low: int | None           # the ,low size (explicit or the arch default) with ,high
    cma: int | None           # additional ,cma reservation
    notes: tuple[str, ...] = ()  # e.g. a number that overflowed 64 bits and wrapped

    def as_json(self) -> dict[str, int | None]:
        return {
            "size": self.size,
            "offset": self.offset,
            "high": self.size if self.high else None,
            "low": self.low,
            "cma": self.cma,
        }


class CrashkernelInvalid(ValueError):
    """The kernel would reserve nothing; the message is the kernel's reason."""


class _Fail(Exception):
    def __init__(self, reason: str, enoent: bool = False, value: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.enoent = enoent
        self.value = value      # what memparse had already stored when the check failed


def _word_end(cmdline: str, i: int) -> int:
    j = cmdline.find(" ", i)
    return len(cmdline) if j < 0 else j


def _last_word(cmdline: str, suffix: str | None) -> int | None:
    """get_last_crashkernel(): index just after "crashkernel=" of the last matching word."""
    found = None
    p = cmdline.find(_NAME)
    while p >= 0:
        end = _word_end(cmdline, p)
        word = cmdline[p:end]
        if suffix is None:
            if not any(word.endswith(s) for s in _SUFFIXES):
                found = p
        elif word.endswith(suffix):
            found = p
        p = cmdline.find(_NAME, p + 1)
    return None if found is None else found + len(_NAME)


CLASSES: tuple[str | None, ...] = (None, ",high", ",low", ",cma")


def word_class(word: str) -> str | None:
    """The class the kernel files a crashkernel= word under: its suffix, None for plain."""
    return next((s for s in _SUFFIXES if word.endswith(s)), None)


def chosen_words(cmdline: str) -> dict[str | None, str]:
    """For each class (None = plain, ",high", ",low", ",cma"), the text the kernel reads for
    it: from the "crashkernel=" of the last occurrence (found anywhere, even inside a
    word such as "crcrashkernel=") to the next space. Classes absent from `cmdline` are
    left out. Comparing these with the words one wrote is how `apply` checks that the
    kernel will use exactly them."""
    out: dict[str | None, str] = {}
    for suffix in CLASSES:
        i = _last_word(cmdline, suffix)
        if i is not None:
            start = i - len(_NAME)
            out[suffix] = cmdline[start:_word_end(cmdline, start)]
    return out


def _at(s: str, i: int) -> str:
    return s[i] if i < len(s) else "\0"


def _mp(s: str, i: int, notes: list[str]) -> tuple[int, int]:
    value, end, overflow = memparse_checked(s, i)
    if overflow:
        notes.append(f"{s[i:end]} does not fit in 64 bits; the kernel wraps it to "
                     f"{value:#x}, and so is it shown here")
    return value, end


def _simple(s: str, i: int, notes: list[str]) -> tuple[int, int | None]:
    size, cur = _mp(s, i, notes)
    if cur == i:
        raise _Fail("memory value expected")
    if _at(s, cur) == "@":
        # No check here in the kernel: "@" followed by junk gives base 0, i.e. "anywhere".
        base, _ = _mp(s, cur + 1, notes)
        return size, base or None
    if _at(s, cur) not in (" ", "\0"):
        raise _Fail(f"unrecognized char: {_at(s, cur)}")
    return size, None


def _ranges(s: str, i: int, system_ram: int, notes: list[str]) -> tuple[int, int | None]:
    total = round_up(system_ram, _ROUND)
    cur = i
    size = 0
    while True:
        start, tmp = _mp(s, cur, notes)
        if tmp == cur:
            raise _Fail("Memory value expected")
        cur = tmp
        if _at(s, cur) != "-":
            raise _Fail("'-' expected")
        cur += 1
        end: int | None = None
        if _at(s, cur) != ":":
            end, tmp = _mp(s, cur, notes)
            if tmp == cur:
                raise _Fail("Memory value expected")
            cur = tmp
            if end <= start:
                raise _Fail("end <= start")
        if _at(s, cur) != ":":
            raise _Fail("':' expected")
        cur += 1
        this, tmp = _mp(s, cur, notes)
        if tmp == cur:
            raise _Fail("Memory value expected")
        cur = tmp
        if this >= total:
            raise _Fail("invalid size")
        if total >= start and (end is None or total < end):
            size = this
            break
        sep = _at(s, cur)
        cur += 1
        if sep != ",":
            break
    base: int | None = None
    if size > 0:
        while _at(s, cur) not in ("\0", " ", "@"):
            cur += 1
        if _at(s, cur) == "@":
            cur += 1
            got, tmp = _mp(s, cur, notes)
            if tmp == cur:
                raise _Fail("Memory value expected after '@'")
            base = got or None     # crash_base 0 means "let the kernel choose"
    # else: the kernel only logs "crashkernel size resulted in zero bytes" and returns 0.
    return size, base


def _suffixed(s: str, i: int, suffix: str, notes: list[str]) -> int:
    size, cur = _mp(s, i, notes)
    if cur == i:
        raise _Fail("memory value expected")
    if not s.startswith(suffix, cur):
        raise _Fail(f"unrecognized char: {_at(s, cur)}", value=size)
    cur += len(suffix)
    if _at(s, cur) not in (" ", "\0"):
        raise _Fail(f"unrecognized char: {_at(s, cur)}", value=size)
    return size


def _parse_one(cmdline: str, system_ram: int, suffix: str | None,
               notes: list[str]) -> tuple[int, int | None]:
    """__parse_crashkernel(): ENOENT when no such word exists."""
    i = _last_word(cmdline, suffix)
    if i is None:
        raise _Fail("no crashkernel= word", enoent=True)
    if suffix is not None:
        return _suffixed(cmdline, i, suffix, notes), None
    colon = cmdline.find(":", i)
    space = cmdline.find(" ", i)
    if colon >= 0 and (space < 0 or colon < space):
        return _ranges(cmdline, i, system_ram, notes)
    return _simple(cmdline, i, notes)


def default_low(arch: ArchInfo, cmdline: str) -> int:
    """DEFAULT_CRASH_KERNEL_LOW_SIZE; on x86_64 max(swiotlb + 8 MiB, 256 MiB)."""
    if arch.name != "x86_64":
        return arch.default_low
    swiotlb = _IO_TLB_DEFAULT
    # setup_io_tlb_npages(): "swiotlb=<nslabs>[,...]", nslabs rounded up to IO_TLB_SEGSIZE.
    for word in cmdline.split():
        if word.startswith("swiotlb="):
            n, end = strtoull(word, len("swiotlb="))
            if end > len("swiotlb=") and n > 0:
                swiotlb = round_up(n, _IO_TLB_SEGSIZE) << _IO_TLB_SHIFT
    return max(swiotlb + 8 * MiB, arch.default_low)


def parse_crashkernel(cmdline: str, system_ram: int, arch: ArchInfo) -> Reservation:
    """What `arch`'s kernel reserves for `cmdline` on a machine with `system_ram` bytes.

    Raises CrashkernelInvalid with the kernel's reason when it would reserve nothing.
    """
    high = False
    low: int | None = None
    cma: int | None = None
    offset: int | None = None
    size = 0
    enoent = False
    notes: list[str] = []
    try:
        size, offset = _parse_one(cmdline, system_ram, None, notes)
    except _Fail as f:
        if not (f.enoent and arch.high_low):
            if f.enoent:
                raise CrashkernelInvalid(
                    "no crashkernel=SIZE on the command line"
                    + ("" if arch.high_low else
                       f" (,high and ,low are not available on {arch.name})")
                ) from None
            raise CrashkernelInvalid(f.reason) from None
        enoent = True
    if enoent:
        try:
            size, _ = _parse_one(cmdline, 0, ",high", notes)
        except _Fail as f:
            raise CrashkernelInvalid(
                "no crashkernel=SIZE or crashkernel=SIZE,high on the command line"
                if f.enoent else f.reason
            ) from None
        if size == 0:
            raise CrashkernelInvalid("crashkernel=0,high reserves nothing")
        try:
            low, _ = _parse_one(cmdline, 0, ",low", notes)
        except _Fail as f:
            if not f.enoent:
                raise CrashkernelInvalid(f.reason) from None
            low = default_low(arch, cmdline)
        high = True
        offset = None
    if arch.cma:
        try:
            cma, _ = _parse_one(cmdline, 0, ",cma", notes)
        except _Fail as f:
            # The kernel ignores the return code here: a malformed ",cma" word still
            # reserves whatever memparse stored before the check failed.
            cma = f.value
    if size == 0:
        raise CrashkernelInvalid("crashkernel size resulted in zero bytes")
    if size >= system_ram:
        raise CrashkernelInvalid(
            f"crashkernel size {size} is not smaller than system RAM {system_ram}"
        )
    if low is not None and low >= (min(system_ram, arch.low_max) if arch.low_max
                                   else system_ram):
        # reserve_crashkernel_low() fails, and the kernel then frees the high part too.
        raise CrashkernelInvalid(f"cannot allocate crashkernel low memory (size:{low:#x})")
    if offset is not None and offset + size > _PHYS_MAX:
        # A fixed base is a memblock range request; nothing is there to allocate.
        raise CrashkernelInvalid(
            f"crashkernel reservation failed - memory is in use. (no RAM at {offset:#x}, "
            "beyond any physical address)")
    return Reservation(size=size, offset=offset, high=high, low=low, cma=cma or None,
                       notes=tuple(dict.fromkeys(notes)))
