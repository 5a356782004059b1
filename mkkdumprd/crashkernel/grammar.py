"""The canonical crashkernel= grammar: what `crashkernel apply` is willing to write.

The kernel's parser is lenient (it stops at the first character it does not expect and
ignores the rest, "@" followed by junk means "anywhere"), so "256M@0 init=/bin/sh" or
"256M@0$(cmd)" pass it. A value we write into boot configuration must be exactly one of

    SIZE[@OFFSET]
    START-[END]:SIZE[,START-[END]:SIZE...][@OFFSET]
    SIZE,high | SIZE,low | SIZE,cma

where a size is decimal digits without a leading 0 (the kernel reads "010" as octal) or 0x
and hex digits, with an optional K/M/G/T/P/E suffix (either case). Anything else is
refused, naming the first character that does not fit.
The kernel's own checks (end > start, size below RAM) are parse.py's job.
"""

from __future__ import annotations

_DEC = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_UNITS = frozenset("KMGTPEkmgtpe")
_SUFFIXES = (",high", ",low", ",cma")


class GrammarError(ValueError):
    """The value is not canonical crashkernel= syntax; the message names the character."""


class _P:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def at(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def fail(self, expected: str) -> GrammarError:
        if self.i >= len(self.s):
            return GrammarError(f"crashkernel={_show(self.s)} ends early: expected {expected}")
        ch = self.s[self.i]
        return GrammarError(
            f"crashkernel={_show(self.s)}: unexpected '{_show(ch)}' at character "
            f"{self.i + 1}: expected {expected} (the value is SIZE[@OFFSET], "
            "START-[END]:SIZE,...[@OFFSET] or SIZE,high|,low|,cma)")

    def size(self) -> None:
        s, start = self.s, self.i
        if s.startswith(("0x", "0X"), start) and start + 2 < len(s) and s[start + 2] in _HEX:
            self.i += 2
            while self.at() and self.at() in _HEX:
                self.i += 1
        else:
            while self.at() and self.at() in _DEC:
                self.i += 1
            if self.i - start > 1 and s[start] == "0":
                # the kernel reads a leading 0 as octal ("08" stops at the 8)
                self.i = start + 1
                raise self.fail("no digit after a leading 0 (it would be read as octal)")
        if self.i == start:
            raise self.fail("a size (digits, optionally with K, M, G, T, P or E)")
        if self.at() and self.at() in _UNITS:
            self.i += 1

    def offset_then_end(self) -> None:
        if self.at() == "@":
            self.i += 1
            self.size()
        if self.i != len(self.s):
            raise self.fail("the end of the value")


def check_value(value: str) -> str:
    """`value` (without "crashkernel=") if it is canonical, else GrammarError."""
    p = _P(value)
    p.size()
    rest = value[p.i:]
    if rest in _SUFFIXES:
        return value
    if p.at() == "-":
        while True:
            if p.at() != "-":
                raise p.fail("'-'")
            p.i += 1
            if p.at() != ":":
                p.size()
            if p.at() != ":":
                raise p.fail("':'")
            p.i += 1
            p.size()
            if p.at() != ",":
                break
            p.i += 1
            p.size()
    p.offset_then_end()
    return value


def _show(text: str) -> str:
    from mkkdumprd.input_file import printable

    return printable(text)


def check_set(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The crashkernel= values `apply` writes as one set, each canonical, in the order
    plain-or-,high, ,low, ,cma. The kernel keeps the last word of each form and a plain
    form hides ,high and ,low, so a set holds at most one of each, never plain and ,high
    together, ,low only beside ,high, and ,cma only beside a fixed part (alone it
    reserves nothing: parse_crashkernel() returns -EINVAL without a base size)."""
    by: dict[str, str] = {}
    for raw in values:
        v = check_value(raw.removeprefix("crashkernel="))
        kind = next((s for s in _SUFFIXES if v.endswith(s)), "plain")
        if kind in by:
            raise GrammarError(f"crashkernel={by[kind]} and crashkernel={v}: one value per "
                               "form (the kernel would use only the last)")
        by[kind] = v
    if not by:
        raise GrammarError("no crashkernel= value given")
    if "plain" in by and ",high" in by:
        raise GrammarError("crashkernel=SIZE and crashkernel=SIZE,high together: the kernel "
                           "ignores ,high when a plain size is given; choose one")
    if ",low" in by and ",high" not in by:
        raise GrammarError("crashkernel=SIZE,low is only read beside crashkernel=SIZE,high")
    if "plain" not in by and ",high" not in by:
        raise GrammarError("crashkernel=SIZE,cma alone reserves nothing: the kernel needs a "
                           "fixed part (crashkernel=SIZE or SIZE,high) for the capture "
                           "kernel and its initramfs")
    return tuple(by[k] for k in ("plain", ",high", ",low", ",cma") if k in by)
