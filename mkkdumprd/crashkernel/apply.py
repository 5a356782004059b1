"""Write the crashkernel= words into the boot configuration of a root, showing the change first.

The words are one set (crashkernel/grammar.py `check_set`): a plain or `,high` size, an
optional `,low` and an optional `,cma`. Every crashkernel= word of ours or the user's is
replaced by the whole set at once, in one atomic write per file.

Four kinds of boot configuration, tried in this order:
  grubby         /usr/sbin/grubby exists (Fedora, RHEL, SUSE with grubby): on the live
                 root only we run `grubby --update-kernel=ALL --remove-args=crashkernel
                 --args="<the set>"` and read the BLS entries back; for any other --root
                 we print the command. The diff shows the BLS entries. (With
                 /etc/zipl.conf beside it, s390x: a note that zipl must run.)
  zipl           /etc/zipl.conf with kernel entries (s390x): their parameters= get the
                 set, then `zipl` runs (live root only); crashkernel/zipl.py.
  grub.d         /etc/default/grub or /etc/default/grub.d exists (Debian, Ubuntu): our own
                 /etc/default/grub.d/mkkdumprd.cfg appends to GRUB_CMDLINE_LINUX_DEFAULT;
                 update-grub has to run afterwards (we remind, we do not run it).
  kernel-cmdline /etc/kernel/cmdline (kernel-install, systemd-boot, UKIs): only the
                 crashkernel= words change (the set goes where the first was, the others
                 are removed, or it is added at the end of the first line); every other
                 byte stays, and a symlinked file is written through its link. A missing
                 file is seeded from /proc/cmdline.

The kernel finds "crashkernel=" anywhere, even inside another word ("crcrashkernel=200M",
"foo.crashkernel=1G"), and takes the last occurrence of each form (parse.py
`chosen_words`). So after every edit we ask which text the kernel would read for each form
of the resulting command line; when a word we do not own would win, the set moves to the
end of the line, and when that cannot help (a plain occurrence hides `,high` wherever it
is) the apply fails naming the word.
A crashkernel= the user set by hand elsewhere is left alone unless force is given.
The set we last wrote is remembered in the state directory (APPLIED, with "recommended"
on its second line when it came from `crashkernel recommend`), so it is recognised as ours
later and replaced without --force (and `auto_reset_crashkernel` may replace it).

Values go through quoting.py: `kernel_word` for kernel command line files,
`grub_append_line` for the grub defaults file.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.crashkernel.parse import chosen_words, word_class
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.input_file import InputFileError, read_input_text
from mkkdumprd.lifecycle.locations import STATE_DIR
from mkkdumprd.quoting import grub_append_line, kernel_word

GRUBBY = PurePosixPath("/usr/sbin/grubby")
GRUB_DEFAULT = PurePosixPath("/etc/default/grub")
GRUB_D = PurePosixPath("/etc/default/grub.d")
OUR_GRUB_CFG = GRUB_D / "mkkdumprd.cfg"
KERNEL_CMDLINE = PurePosixPath("/etc/kernel/cmdline")
BLS_ENTRIES = PurePosixPath("/boot/loader/entries")
APPLIED = STATE_DIR / "crashkernel-applied"
RECOMMENDED_MARK = "recommended"

_NAME = "crashkernel="
# A crashkernel= word of its own (at a word start): the ones we replace or call hand-set.
_CK_WORD = re.compile(r'(?<!\S)crashkernel=(?:"[^"\n]*"|\S)*')
_HEADER = "# Written by `mkkdumprd crashkernel apply`; run update-grub after changing it.\n"
_GRUB_VAR = re.compile(r'^\s*(?:export\s+)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$')


@dataclass(frozen=True)
class Change:
    path: PurePosixPath          # inside the root
    old: str | None              # None: the file does not exist yet
    new: str
    follow: bool = False         # write through a symlink at `path` (to its target)


@dataclass(frozen=True)
class ApplyPlan:
    kind: str                    # "grubby", "zipl", "grub.d", "kernel-cmdline"
    value: str                   # the set, words without "crashkernel=", space-separated
    changes: tuple[Change, ...]  # files we write (grub.d, kernel-cmdline)
    preview: tuple[Change, ...]  # what grubby would do, shown only
    command: tuple[str, ...] | None
    kept: tuple[str, ...]        # hand-set values found and left alone
    notes: tuple[str, ...]
    recommended: bool = False    # the set came from `crashkernel recommend` (recorded)

    @property
    def needed(self) -> bool:
        return bool(self.changes or self.command)

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(f"{_NAME}{v}" for v in self.value.split())

    def diff(self) -> str:
        out: list[str] = []
        for c in (*self.changes, *self.preview):
            out.extend(difflib.unified_diff(
                (c.old or "").splitlines(keepends=True), c.new.splitlines(keepends=True),
                fromfile=f"a{c.path}" if c.old is not None else "/dev/null",
                tofile=f"b{c.path}"))
        return "".join(x if x.endswith("\n") else x + "\n" for x in out)


def _live_lines(text: str) -> list[str]:
    """The lines that reach a command line: shell/BLS comment lines are skipped."""
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def _values(text: str) -> list[str]:
    """Values of the crashkernel= words (at a word start) in `text`, outside comments."""
    return [m.group(0)[len(_NAME):].strip('"') for line in _live_lines(text)
            for m in _CK_WORD.finditer(line)]


def conflicts(cmdline: str, words: Sequence[str]) -> list[str]:
    """Why the kernel would not use exactly `words` (full "crashkernel=..." words) for
    `cmdline`: for each form, the text it would read instead. Empty when it uses ours."""
    want = {word_class(w): w for w in words}
    got = chosen_words(cmdline)
    out: list[str] = []
    for cls, found in got.items():
        form = cls or "plain"
        # name the whole word when the text sits inside another one (crcrashkernel=200M)
        text = next((w for w in cmdline.split() if w.endswith(found) and w != found
                     and found in w), found)
        if cls in want:
            if found != want[cls]:
                out.append(f"the kernel would read '{found}' (in '{text}') for the {form} "
                           f"form, not '{want[cls]}'")
        elif (cls is None and ",high" in want) or (cls == ",low" and ",high" in want):
            out.append(f"'{text}' ({form}) would " + (
                "hide crashkernel=,high (a plain size wins wherever it is)"
                if cls is None else "be read as the ,low size"))
        elif cls == ",cma":
            out.append(f"'{text}' would reserve CMA memory besides the set")
    return out


def _joined(text: str) -> str:
    """A file's command line as the kernel gets it (kernel-install joins its lines)."""
    return " ".join(" ".join(_live_lines(text)).split())


def _edit_words(text: str, words: Sequence[str], *, where: str = "") -> str:
    """`text` with its crashkernel= words replaced by `words`, every other byte unchanged:
    the set goes where the first crashkernel= word was (the others are removed with the
    blanks before them) or at the end of the first line; if the kernel would then still
    read another word's crashkernel= for some form (one inside another word after ours),
    the set goes at the end of the last line instead. OperationError when no place works."""
    joined = " ".join(kernel_word(w) for w in words)
    matches = list(_CK_WORD.finditer(text))
    # every crashkernel= word removed with the blanks before it (a word at the very start
    # of a line takes the blanks after it instead)
    gone: list[str] = []
    pos = 0
    for m in matches:
        before = text[pos:m.start()]
        kept = before.rstrip(" \t")
        gone.append(kept)
        pos = m.end()
        if kept == "" or kept.endswith("\n"):
            while pos < len(text) and text[pos] in " \t":
                pos += 1
    gone.append(text[pos:])
    rest = "".join(gone)
    candidates: list[str] = []
    if matches:
        # in place of the first one: everything before it unchanged
        first = matches[0]
        tail = "".join(gone[1:])
        candidates.append(text[:first.start()] + joined
                          + (tail if tail[:1] in ("", "\n", " ", "\t") else " " + tail))
    else:
        line, nl, after = rest.partition("\n")
        sep = " " if line.strip() else ""
        candidates.append(line.rstrip(" \t") + sep + joined + (nl or "\n") + after)
    # at the end of the last line that has words
    body = rest.rstrip("\n \t")
    trailer = rest[len(body):]
    candidates.append(body + (" " if body.strip() else "") + joined + (trailer or "\n"))
    for new in candidates:
        if not conflicts(_joined(new), words):
            return new
    why = "; ".join(conflicts(_joined(candidates[-1]), words))
    raise OperationError(f"{where or 'the command line'}: {why}; remove that word by hand "
                         "(it is not a crashkernel= word of its own, so apply leaves it)")


def _hand_set(where: str, text: str, values: Sequence[str], ours: Sequence[str]) -> list[str]:
    return [f"{where}: crashkernel={v}" for v in _values(text)
            if v not in values and v not in ours]


def _left_alone(kind: str, value: str, kept: list[str]) -> ApplyPlan:
    return ApplyPlan(kind, value, (), (), None, tuple(kept),
                     ("crashkernel= is already set by hand; left alone (use --force)",))


def _grubby_plan(host: Host, values: tuple[str, ...], force: bool,
                 recommended: bool) -> ApplyPlan:
    value = " ".join(values)
    words = [f"{_NAME}{v}" for v in values]
    ours = _our_values(host)
    kept: list[str] = []
    entries = [BLS_ENTRIES / n for n in host.listdir(BLS_ENTRIES) if n.endswith(".conf")]
    texts = {p: _read(host, p) for p in entries}
    for p, text in texts.items():
        kept += _hand_set(str(p), text, values, ours)
    if host.is_file(GRUB_DEFAULT):
        kept += _hand_set(str(GRUB_DEFAULT), _read(host, GRUB_DEFAULT), values, ours)
    if kept and not force:
        return _left_alone("grubby", value, kept)
    preview: list[Change] = []
    for p, old in texts.items():
        new = "".join(_edit_options(line, words, str(p))
                      for line in old.splitlines(keepends=True))
        if new != old:
            preview.append(Change(p, old, new))
    if entries and not preview:
        return ApplyPlan("grubby", value, (), (), None, (), ("already set; nothing to do",),
                         recommended)
    cmd = (str(GRUBBY), "--update-kernel=ALL", f"--remove-args={_NAME[:-1]}",
           f"--args={' '.join(words)}")
    return ApplyPlan("grubby", value, (), tuple(preview), cmd, tuple(kept), (), recommended)


def _edit_options(line: str, words: Sequence[str], where: str) -> str:
    """A BLS entry line; an `options` line gets the set (`_edit_words`)."""
    m = re.match(r"^(options\s+)(.*?)(\n?)$", line)
    if not m:
        return line
    return m.group(1) + _edit_words(m.group(2), words, where=where).rstrip("\n") + m.group(3)


def _grub_effective(host: Host, ours: str | None) -> str:
    """The crashkernel-bearing part of the linux line update-grub writes: the files are
    sourced in order (/etc/default/grub, then grub.d/*.cfg sorted, with `ours` as the
    contents of our file), and the line is $GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT.
    An assignment that does not reference the variable's old value replaces it."""
    names = sorted({n for n in host.listdir(GRUB_D) if n.endswith(".cfg")}
                   | ({OUR_GRUB_CFG.name} if ours is not None else set()))
    files = [GRUB_DEFAULT] + [GRUB_D / n for n in names]
    var: dict[str, list[str]] = {"GRUB_CMDLINE_LINUX": [], "GRUB_CMDLINE_LINUX_DEFAULT": []}
    for p in files:
        if p == OUR_GRUB_CFG:
            text = ours or ""
        elif host.is_file(p):
            text = _read(host, p)
        else:
            continue
        for line in _live_lines(text):
            m = _GRUB_VAR.match(line)
            if not m:
                continue
            name, rhs = m.group(1), m.group(2)
            found = [w.strip("\"'") for w in rhs.split() if _NAME in w]
            if f"${name}" in rhs or f"${{{name}}}" in rhs:
                var[name] += found
            else:
                var[name] = found
    return " ".join(var["GRUB_CMDLINE_LINUX"] + var["GRUB_CMDLINE_LINUX_DEFAULT"])


def _grub_d_plan(host: Host, values: tuple[str, ...], force: bool,
                 recommended: bool) -> ApplyPlan:
    value = " ".join(values)
    words = [f"{_NAME}{v}" for v in values]
    ours = _our_values(host)
    kept: list[str] = []
    candidates = [GRUB_DEFAULT] + [GRUB_D / n for n in host.listdir(GRUB_D)
                                   if n.endswith(".cfg") and GRUB_D / n != OUR_GRUB_CFG]
    for p in candidates:
        if host.is_file(p):
            kept += _hand_set(str(p), _read(host, p), values, ours)
    if kept and not force:
        return _left_alone("grub.d", value, kept)
    old = _read(host, OUR_GRUB_CFG) if host.is_file(OUR_GRUB_CFG) else None
    new = _HEADER + "".join(grub_append_line("GRUB_CMDLINE_LINUX_DEFAULT", w) for w in words)
    why = conflicts(_grub_effective(host, new), words)
    if why:
        raise OperationError(f"{GRUB_D}: with {OUR_GRUB_CFG.name} written, "
                             + "; ".join(why) + "; remove that word from the grub defaults "
                             "by hand")
    notes = ["run `update-grub` (or `grub-mkconfig -o /boot/grub/grub.cfg`) and reboot"]
    if kept:
        notes.insert(0, f"{OUR_GRUB_CFG.name} is read after the other files, so its "
                     "crashkernel= words come last on the command line and win")
    if old == new:
        return ApplyPlan("grub.d", value, (), (), None, tuple(kept),
                         ("already set; nothing to do",), recommended)
    return ApplyPlan("grub.d", value, (Change(OUR_GRUB_CFG, old, new),), (), None,
                     tuple(kept), tuple(notes), recommended)


def _kernel_cmdline_plan(host: Host, values: tuple[str, ...], force: bool,
                         recommended: bool) -> ApplyPlan:
    value = " ".join(values)
    words = [f"{_NAME}{v}" for v in values]
    notes: list[str] = []
    if os.path.lexists(host.path(KERNEL_CMDLINE)):  # also a FIFO or dangling link: an error
        old: str | None = _read(host, KERNEL_CMDLINE)
        base = old or ""
    else:
        old = None
        running = host.read_optional("/proc/cmdline")
        if running is None:
            raise OperationError(
                f"no boot configuration found under {host.root} (no /usr/sbin/grubby, "
                "/etc/default/grub or /etc/kernel/cmdline); add crashkernel= to your boot "
                "loader's kernel command line by hand")
        base = " ".join(w for w in running.split()
                        if not w.startswith(("BOOT_IMAGE=", "initrd="))) + "\n"
        notes.append(f"{KERNEL_CMDLINE} did not exist; seeded from /proc/cmdline")
    kept = _hand_set(str(KERNEL_CMDLINE), base, values, _our_values(host))
    if kept and not force:
        return _left_alone("kernel-cmdline", value, kept)
    new = _edit_words(base, words, where=str(KERNEL_CMDLINE))
    notes.append("the next `kernel-install add` (kernel update) puts it into the boot entry")
    if old == new:
        return ApplyPlan("kernel-cmdline", value, (), (), None, (),
                         ("already set; nothing to do",), recommended)
    return ApplyPlan("kernel-cmdline", value,
                     (Change(KERNEL_CMDLINE, old, new, follow=True),), (), None,
                     tuple(kept), tuple(notes), recommended)


def _read(host: Host, p: PurePosixPath) -> str:
    """A boot configuration file: regular, bounded, UTF-8 (a one-line error otherwise)."""
    try:
        return read_input_text(host.path(host.resolve(p)))
    except InputFileError as exc:
        raise OperationError(f"cannot read {p}: {exc.reason}") from None


def applied_record(host: Host) -> tuple[tuple[str, ...], bool]:
    """(the values `apply` last wrote under this root, whether they were a recommendation)."""
    try:
        text = read_input_text(host.path(APPLIED), 4096, errors="replace")
    except InputFileError:
        return (), False
    lines = text.splitlines()
    values = tuple(lines[0].split()) if lines else ()
    return values, len(lines) > 1 and lines[1].strip() == RECOMMENDED_MARK


def _our_values(host: Host) -> tuple[str, ...]:
    return applied_record(host)[0]


def current_values(host: Host) -> tuple[str, ...]:
    """The crashkernel= values the boot configuration holds now (all places apply knows)."""
    out: list[str] = []
    for p in [BLS_ENTRIES / n for n in host.listdir(BLS_ENTRIES) if n.endswith(".conf")]:
        out += _values("\n".join(line for line in _read(host, p).splitlines()
                                 if line.startswith("options")))
    for p in [GRUB_DEFAULT] + [GRUB_D / n for n in sorted(host.listdir(GRUB_D))
                               if n.endswith(".cfg")] + [KERNEL_CMDLINE]:
        if host.is_file(p):
            out += _values(_read(host, p))
    from mkkdumprd.crashkernel import zipl

    if host.is_file(zipl.ZIPL_CONF):
        out += [v for _, params in zipl.parameters(_read(host, zipl.ZIPL_CONF))
                for v in _values(params)]
    return tuple(dict.fromkeys(out))


def _zipl_plan(host: Host, values: tuple[str, ...], force: bool,
               recommended: bool) -> ApplyPlan:
    """s390x /etc/zipl.conf (crashkernel/zipl.py: the file's shape), then `zipl`."""
    from mkkdumprd.crashkernel import zipl

    value = " ".join(values)
    words = [f"{_NAME}{v}" for v in values]
    old = _read(host, zipl.ZIPL_CONF)
    ours = _our_values(host)
    kept = [k for name, params in zipl.parameters(old)
            for k in _hand_set(f"{zipl.ZIPL_CONF} [{name}]", params, values, ours)]
    if kept and not force:
        return _left_alone("zipl", value, kept)
    new = zipl.edit(old, lambda params, where: _edit_words(params, words, where=where))
    if new == old:
        return ApplyPlan("zipl", value, (), (), None, (), ("already set; nothing to do",),
                         recommended)
    cmd = (str(host.which(zipl.ZIPL) or zipl.ZIPL),)
    return ApplyPlan("zipl", value, (Change(zipl.ZIPL_CONF, old, new, follow=True),), (), cmd,
                     tuple(kept), ("zipl rewrites the boot record; reboot afterwards",),
                     recommended)


def plan_apply(host: Host, value: str | Sequence[str], force: bool = False,
               recommended: bool = False) -> ApplyPlan:
    """What applying the crashkernel= set `value` (one value, a space-separated string or a
    sequence; checked by grammar.check_set) to the root would change (nothing is written)."""
    from mkkdumprd.crashkernel.grammar import check_set

    raw = value.split() if isinstance(value, str) else list(value)
    values = check_set(raw)
    from mkkdumprd.crashkernel import zipl

    if host.is_file(GRUBBY):
        plan = _grubby_plan(host, values, force, recommended)
        if plan.needed and host.is_file(zipl.ZIPL_CONF):     # s390x with BLS entries
            plan = replace(plan, notes=(*plan.notes, f"then {zipl.RUN_ZIPL}"))
        return plan
    if host.is_file(zipl.ZIPL_CONF) and zipl.has_kernel_entries(_read(host, zipl.ZIPL_CONF)):
        return _zipl_plan(host, values, force, recommended)
    if host.is_file(GRUB_DEFAULT) or host.is_dir(GRUB_D):
        return _grub_d_plan(host, values, force, recommended)
    return _kernel_cmdline_plan(host, values, force, recommended)


def _atomic_write(path: Path, text: str) -> None:
    """Replace a boot configuration file, keeping its permissions (0644 for a new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    atomic_write(path, text, mode)


def _write_or_fail(path: Path, text: str, shown: PurePosixPath) -> None:
    try:
        _atomic_write(path, text)
    except OSError as exc:
        raise OperationError(f"cannot write {shown}: {exc.strerror or exc}; changing the boot "
                             "configuration needs root and a writable /etc") from None


def _record(plan: ApplyPlan, host: Host) -> None:
    _write_or_fail(host.path(APPLIED), plan.value + "\n"
                   + (RECOMMENDED_MARK + "\n" if plan.recommended else ""), APPLIED)


def perform(plan: ApplyPlan, host: Host) -> list[str]:
    """Write the plan's files atomically; run grubby (host.run) only on the live root and
    check the BLS entries it left. Returns the messages for the user."""
    done: list[str] = []
    for c in plan.changes:
        target = host.resolve(c.path) if c.follow else c.path
        _write_or_fail(host.path(target), c.new, c.path)
        done.append(f"wrote {c.path}" + (f" (through the link, {target})"
                                           if target != c.path else ""))
    if plan.changes:
        _record(plan, host)
    if plan.command:
        if host.is_live:
            res = host.run(plan.command, None)
            if res.returncode != 0:
                raise OperationError(
                    f"`{' '.join(plan.command)}` failed (exit {res.returncode}): "
                    f"{(res.stderr or res.stdout).strip()}")
            done.append(f"ran {' '.join(plan.command)}")
            for p in [BLS_ENTRIES / n for n in host.listdir(BLS_ENTRIES)
                      if n.endswith(".conf")]:
                for line in _read(host, p).splitlines():
                    why = conflicts(line, plan.words) if line.startswith("options") else []
                    if why:
                        raise OperationError(f"{p}: after grubby, " + "; ".join(why))
            _record(plan, host)
        else:
            done.append(f"not running {PurePosixPath(plan.command[0]).name} for a root other "
                        f"than /; run inside {host.root}: {' '.join(plan.command)}")
    return done
