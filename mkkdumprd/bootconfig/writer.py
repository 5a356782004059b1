"""Write, replace or remove one owner's kernel command line words (owner.py) in the boot
configuration of a root, showing the change first.

The words are one set: every domain word of the owner is replaced by the whole set at once,
in one atomic write per file, or removed (only the words the owner recorded as its own).

Four kinds of boot configuration, tried in this order:
  grubby         /usr/sbin/grubby exists (Fedora, RHEL, SUSE with grubby): on the live
                 root only we run `grubby --update-kernel=ALL --remove-args=<names>
                 --args="<the set>"` and read the BLS entries back; for any other --root
                 we print the command. The diff shows the BLS entries. (With
                 /etc/zipl.conf beside it, s390x: a note that zipl must run.) grub's BLS
                 support expands `$` in `options` and grubby removes arguments by name, so
                 a word with `$` or of a shared name (memmap=) is refused there.
  zipl           /etc/zipl.conf with kernel entries (s390x): their parameters= get the
                 set, then `zipl` runs (live root only); crashkernel/zipl.py knows the file.
  grub.d         /etc/default/grub or /etc/default/grub.d exists (Debian, Ubuntu): the
                 owner's own /etc/default/grub.d/<name>.cfg appends to
                 GRUB_CMDLINE_LINUX_DEFAULT; update-grub has to run afterwards (we remind,
                 we do not run it). Removing deletes that file.
  kernel-cmdline /etc/kernel/cmdline (kernel-install, systemd-boot, UKIs): only the
                 owner's words change (the set goes where the first was, the others are
                 removed, or it is added at the end of the first line); every other byte
                 stays, and a symlinked file is written through its link. A missing file is
                 seeded from /proc/cmdline.

After every edit the owner's `conflicts` says whether the kernel would read the set as
written; when another word would win, the set moves to the end of the line, and when that
cannot help the change fails naming the word. A domain word the user set by hand elsewhere
is left alone (and so is the whole change) unless force is given. The set last written is
remembered in the owner's record (its words, with an optional mark on the second line), so
it is recognised as ours later, replaced without force and removed by `plan_remove`.

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
from mkkdumprd.bootconfig.owner import Owner
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.input_file import InputFileError, read_input_text
from mkkdumprd.quoting import grub_append_line, kernel_word

GRUBBY = PurePosixPath("/usr/sbin/grubby")
GRUB_DEFAULT = PurePosixPath("/etc/default/grub")
GRUB_D = PurePosixPath("/etc/default/grub.d")
KERNEL_CMDLINE = PurePosixPath("/etc/kernel/cmdline")
BLS_ENTRIES = PurePosixPath("/boot/loader/entries")
NOTHING_TO_DO = "already set; nothing to do"
_GRUB_VAR = re.compile(r'^\s*(?:export\s+)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$')


@dataclass(frozen=True)
class Change:
    path: PurePosixPath          # inside the root
    old: str | None              # None: the file does not exist yet
    new: str | None              # None: the file is removed
    follow: bool = False         # write through a symlink at `path` (to its target)


@dataclass(frozen=True)
class Plan:
    owner: Owner
    kind: str                    # "grubby", "zipl", "grub.d", "kernel-cmdline"
    words: tuple[str, ...]       # the set written; () when removing
    changes: tuple[Change, ...]  # files we write (zipl, grub.d, kernel-cmdline)
    preview: tuple[Change, ...]  # what grubby would do, shown only
    command: tuple[str, ...] | None
    kept: tuple[str, ...]        # hand-set words found and left alone
    notes: tuple[str, ...]
    mark: str = ""               # recorded beside the words (crashkernel: "recommended")

    @property
    def needed(self) -> bool:
        return bool(self.changes or self.command)

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(self.owner.token(w) for w in self.words)

    @property
    def value(self) -> str:
        """The set as recorded: its tokens, space-separated."""
        return " ".join(self.tokens)

    def diff(self) -> str:
        out: list[str] = []
        for c in (*self.changes, *self.preview):
            out.extend(difflib.unified_diff(
                (c.old or "").splitlines(keepends=True),
                (c.new or "").splitlines(keepends=True),
                fromfile=f"a{c.path}" if c.old is not None else "/dev/null",
                tofile=f"b{c.path}" if c.new is not None else "/dev/null"))
        return "".join(x if x.endswith("\n") else x + "\n" for x in out)

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "words": list(self.words),
                "changes": [{"path": str(c.path), "action": "remove" if c.new is None
                             else "create" if c.old is None else "update"}
                            for c in self.changes],
                "command": list(self.command) if self.command else None,
                "kept": list(self.kept), "notes": list(self.notes),
                "needed": self.needed, "diff": self.diff()}


def live_lines(text: str) -> list[str]:
    """The lines that reach a command line: shell/BLS comment lines are skipped."""
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def tokens_in(owner: Owner, text: str) -> list[str]:
    """The owner's domain words in `text` (at a word start, outside comments), as tokens."""
    return [owner.token(m.group(0)) for line in live_lines(text)
            for m in owner.word.finditer(line)]


def joined(text: str) -> str:
    """A file's command line as the kernel gets it (kernel-install joins its lines)."""
    return " ".join(" ".join(live_lines(text)).split())


def edit_words(owner: Owner, text: str, words: Sequence[str], ours: Sequence[str], *,
               where: str = "", remove: bool = False) -> str:
    """`text` with the owner's words replaced by `words`, every other byte unchanged: the
    set goes where the first domain word was (the others are removed with the blanks
    before them) or at the end of the first line; if the kernel would then still read
    another word for some parameter (one inside another word after ours), the set goes at
    the end of the last line instead. OperationError when no place works. `remove`: only
    the words the owner recorded (`ours`) go, and nothing is added."""
    new_tokens = [owner.token(w) for w in words]
    joined_set = " ".join(kernel_word(w) for w in words)
    matches = [m for m in owner.word.finditer(text)
               if (owner.token(m.group(0)) in ours if remove
                   else owner.counts(owner.token(m.group(0)), ours, new_tokens))]
    # every matched word removed with the blanks before it (a word at the very start
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
    if remove:
        return rest
    candidates: list[str] = []
    if matches:
        # in place of the first one: everything before it unchanged
        first = matches[0]
        tail = "".join(gone[1:])
        candidates.append(text[:first.start()] + joined_set
                          + (tail if tail[:1] in ("", "\n", " ", "\t") else " " + tail))
    else:
        line, nl, after = rest.partition("\n")
        sep = " " if line.strip() else ""
        candidates.append(line.rstrip(" \t") + sep + joined_set + (nl or "\n") + after)
    # at the end of the last line that has words
    body = rest.rstrip("\n \t")
    trailer = rest[len(body):]
    candidates.append(body + (" " if body.strip() else "") + joined_set + (trailer or "\n"))
    for new in candidates:
        if not owner.conflicts(joined(new), words):
            return new
    why = "; ".join(owner.conflicts(joined(candidates[-1]), words))
    raise OperationError(f"{where or 'the command line'}: {why}; remove that word by hand "
                         f"(it is not a {owner.label} word of its own, so it is left alone)")


def _hand_set(owner: Owner, where: str, text: str, new: Sequence[str],
              ours: Sequence[str]) -> list[str]:
    return [f"{where}: {w}" for w, t in zip(_domain_words(owner, text),
                                            tokens_in(owner, text), strict=True)
            if owner.counts(t, ours, new) and not owner.mine(t, ours, new)]


def _domain_words(owner: Owner, text: str) -> list[str]:
    return [m.group(0) for line in live_lines(text) for m in owner.word.finditer(line)]


def _left_alone(owner: Owner, kind: str, words: Sequence[str], kept: list[str],
                mark: str) -> Plan:
    return Plan(owner, kind, tuple(words), (), (), None, tuple(kept),
                (f"{owner.label} is already set by hand; left alone (use --force)",), mark)


def _bls_entries(host: Host) -> list[PurePosixPath]:
    return [BLS_ENTRIES / n for n in host.listdir(BLS_ENTRIES) if n.endswith(".conf")]


def _grubby_plan(owner: Owner, host: Host, words: tuple[str, ...], force: bool, mark: str,
                 remove: bool) -> Plan:
    ours = applied_record(owner, host)[0]
    new = [owner.token(w) for w in words]
    gone = [owner.to_word(t) for t in ours] if remove else list(words)
    bad = [w for w in gone if "$" in w or (owner.shared and owner.shared.match(w))]
    if bad:
        raise OperationError(
            f"{' '.join(bad)}: not written through grubby (grub's BLS support expands $ in "
            "an entry's options, and grubby removes arguments by name, also the ones set "
            "by hand); add it to the kernel command line by hand")
    kept: list[str] = []
    texts = {p: read(host, p) for p in _bls_entries(host)}
    for p, text in texts.items():
        kept += _hand_set(owner, str(p), text, new, ours)
    if host.is_file(GRUB_DEFAULT):
        kept += _hand_set(owner, str(GRUB_DEFAULT), read(host, GRUB_DEFAULT), new, ours)
    if kept and not force and not remove:
        return _left_alone(owner, "grubby", words, kept, mark)
    preview: list[Change] = []
    for p, old in texts.items():
        edited = "".join(_edit_options(owner, line, words, ours, str(p), remove)
                         for line in old.splitlines(keepends=True))
        if edited != old:
            preview.append(Change(p, old, edited))
    if not preview and (texts or remove):
        return Plan(owner, "grubby", words, (), (), None, tuple(kept), (NOTHING_TO_DO,), mark)
    names = " ".join(dict.fromkeys(w.split("=", 1)[0] for w in (*gone, *words)))
    cmd = (str(GRUBBY), "--update-kernel=ALL", f"--remove-args={names}",
           *([f"--args={' '.join(words)}"] if words else []))
    return Plan(owner, "grubby", words, (), tuple(preview), cmd, tuple(kept), (), mark)


def _edit_options(owner: Owner, line: str, words: Sequence[str], ours: Sequence[str],
                  where: str, remove: bool) -> str:
    """A BLS entry line; an `options` line gets the set (`edit_words`)."""
    m = re.match(r"^(options\s+)(.*?)(\n?)$", line)
    if not m:
        return line
    return m.group(1) + edit_words(owner, m.group(2), words, ours, where=where,
                                   remove=remove).rstrip("\n") + m.group(3)


def _grub_effective(owner: Owner, host: Host, ours: str | None) -> str:
    """The linux line's arguments update-grub writes: the files are sourced in order
    (/etc/default/grub, then grub.d/*.cfg sorted, with `ours` as the contents of the
    owner's file), and the line is $GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT. An
    assignment that does not reference the variable's old value replaces it."""
    names = sorted({n for n in host.listdir(GRUB_D) if n.endswith(".cfg")}
                   | ({owner.grub_cfg.name} if ours is not None else set()))
    files = [GRUB_DEFAULT] + [GRUB_D / n for n in names]
    var: dict[str, list[str]] = {"GRUB_CMDLINE_LINUX": [], "GRUB_CMDLINE_LINUX_DEFAULT": []}
    for p in files:
        if p == owner.grub_cfg:
            text = ours or ""
        elif host.is_file(p):
            text = read(host, p)
        else:
            continue
        for line in live_lines(text):
            m = _GRUB_VAR.match(line)
            if not m:
                continue
            name, rhs = m.group(1), m.group(2)
            found = [w.strip("\"'").replace("\\\\\\$", "$") for w in rhs.split()
                     if not w.strip("\"'").startswith("$")]
            if f"${name}" in rhs or f"${{{name}}}" in rhs:
                var[name] += found
            else:
                var[name] = found
    return " ".join(var["GRUB_CMDLINE_LINUX"] + var["GRUB_CMDLINE_LINUX_DEFAULT"])


def grub_header(owner: Owner) -> str:
    return f"# Written by `{owner.command}`; run update-grub after changing it.\n"


def _grub_d_plan(owner: Owner, host: Host, words: tuple[str, ...], force: bool, mark: str,
                 remove: bool) -> Plan:
    ours = applied_record(owner, host)[0]
    new_tokens = [owner.token(w) for w in words]
    old = read(host, owner.grub_cfg) if host.is_file(owner.grub_cfg) else None
    update = ["run `update-grub` (or `grub-mkconfig -o /boot/grub/grub.cfg`) and reboot"]
    if remove:
        if old is None:
            return Plan(owner, "grub.d", (), (), (), None, (), (f"no {owner.grub_cfg}; "
                        "nothing to remove",), mark)
        return Plan(owner, "grub.d", (), (Change(owner.grub_cfg, old, None),), (), None, (),
                    tuple(update), mark)
    kept: list[str] = []
    candidates = [GRUB_DEFAULT] + [GRUB_D / n for n in host.listdir(GRUB_D)
                                   if n.endswith(".cfg") and GRUB_D / n != owner.grub_cfg]
    for p in candidates:
        if host.is_file(p):
            kept += _hand_set(owner, str(p), read(host, p), new_tokens, ours)
    if kept and not force:
        return _left_alone(owner, "grub.d", words, kept, mark)
    new = grub_header(owner) + "".join(grub_append_line("GRUB_CMDLINE_LINUX_DEFAULT", w)
                                       for w in words)
    why = owner.conflicts(_grub_effective(owner, host, new), words)
    if why:
        raise OperationError(f"{GRUB_D}: with {owner.grub_cfg.name} written, "
                             + "; ".join(why) + "; remove that word from the grub defaults "
                             "by hand")
    notes = list(update)
    if kept:
        notes.insert(0, f"{owner.grub_cfg.name} is read after the other files, so its "
                     f"{owner.label} words come last on the command line and win")
    if old == new:
        return Plan(owner, "grub.d", words, (), (), None, tuple(kept), (NOTHING_TO_DO,), mark)
    return Plan(owner, "grub.d", words, (Change(owner.grub_cfg, old, new),), (), None,
                tuple(kept), tuple(notes), mark)


def _kernel_cmdline_plan(owner: Owner, host: Host, words: tuple[str, ...], force: bool,
                         mark: str, remove: bool) -> Plan:
    notes: list[str] = []
    if os.path.lexists(host.path(KERNEL_CMDLINE)):  # also a FIFO or dangling link: an error
        old: str | None = read(host, KERNEL_CMDLINE)
        base = old or ""
    elif remove:
        return Plan(owner, "kernel-cmdline", (), (), (), None, (),
                    (f"no {KERNEL_CMDLINE}; nothing to remove",), mark)
    else:
        old = None
        running = host.read_optional("/proc/cmdline")
        if running is None:
            raise OperationError(
                f"no boot configuration found under {host.root} (no /usr/sbin/grubby, "
                f"/etc/default/grub or /etc/kernel/cmdline); add {owner.label} to your boot "
                "loader's kernel command line by hand")
        base = " ".join(w for w in running.split()
                        if not w.startswith(("BOOT_IMAGE=", "initrd="))) + "\n"
        notes.append(f"{KERNEL_CMDLINE} did not exist; seeded from /proc/cmdline")
    ours = applied_record(owner, host)[0]
    kept = _hand_set(owner, str(KERNEL_CMDLINE), base, [owner.token(w) for w in words], ours)
    if kept and not force and not remove:
        return _left_alone(owner, "kernel-cmdline", words, kept, mark)
    new = edit_words(owner, base, words, ours, where=str(KERNEL_CMDLINE), remove=remove)
    notes.append("the next `kernel-install add` (kernel update) puts it into the boot entry")
    if old == new:
        return Plan(owner, "kernel-cmdline", words, (), (), None, (), (NOTHING_TO_DO,), mark)
    return Plan(owner, "kernel-cmdline", words,
                (Change(KERNEL_CMDLINE, old, new, follow=True),), (), None,
                tuple(kept), tuple(notes), mark)


def _zipl_plan(owner: Owner, host: Host, words: tuple[str, ...], force: bool, mark: str,
               remove: bool) -> Plan:
    """s390x /etc/zipl.conf (crashkernel/zipl.py: the file's shape), then `zipl`."""
    from mkkdumprd.crashkernel import zipl

    old = read(host, zipl.ZIPL_CONF)
    ours = applied_record(owner, host)[0]
    new_tokens = [owner.token(w) for w in words]
    kept = [k for name, params in zipl.parameters(old)
            for k in _hand_set(owner, f"{zipl.ZIPL_CONF} [{name}]", params, new_tokens, ours)]
    if kept and not force and not remove:
        return _left_alone(owner, "zipl", words, kept, mark)
    new = zipl.edit(old, lambda params, where: edit_words(owner, params, words, ours,
                                                           where=where, remove=remove))
    if new == old:
        return Plan(owner, "zipl", words, (), (), None, (), (NOTHING_TO_DO,), mark)
    cmd = (str(host.which(zipl.ZIPL) or zipl.ZIPL),)
    return Plan(owner, "zipl", words, (Change(zipl.ZIPL_CONF, old, new, follow=True),), (),
                cmd, tuple(kept), ("zipl rewrites the boot record; reboot afterwards",), mark)


def _plan(owner: Owner, host: Host, words: tuple[str, ...], force: bool, mark: str,
          remove: bool) -> Plan:
    from mkkdumprd.crashkernel import zipl

    if host.is_file(GRUBBY):
        plan = _grubby_plan(owner, host, words, force, mark, remove)
        if plan.needed and host.is_file(zipl.ZIPL_CONF):     # s390x with BLS entries
            plan = replace(plan, notes=(*plan.notes, f"then {zipl.RUN_ZIPL}"))
        return plan
    if host.is_file(zipl.ZIPL_CONF) and zipl.has_kernel_entries(read(host, zipl.ZIPL_CONF)):
        return _zipl_plan(owner, host, words, force, mark, remove)
    if host.is_file(GRUB_DEFAULT) or host.is_dir(GRUB_D):
        return _grub_d_plan(owner, host, words, force, mark, remove)
    return _kernel_cmdline_plan(owner, host, words, force, mark, remove)


def plan_write(owner: Owner, host: Host, words: Sequence[str], force: bool = False,
               mark: str = "") -> Plan:
    """What writing the set `words` (full words, already checked by the owner's grammar)
    into the root's boot configuration would change (nothing is written)."""
    return _plan(owner, host, tuple(words), force, mark, remove=False)


def plan_remove(owner: Owner, host: Host) -> Plan:
    """What removing the owner's recorded words from the boot configuration would change.
    Words set by hand stay; nothing is written."""
    return _plan(owner, host, (), False, "", remove=True)


def read(host: Host, p: PurePosixPath) -> str:
    """A boot configuration file: regular, bounded, UTF-8 (a one-line error otherwise)."""
    try:
        return read_input_text(host.path(host.resolve(p)))
    except InputFileError as exc:
        raise OperationError(f"cannot read {p}: {exc.reason}") from None


def applied_record(owner: Owner, host: Host) -> tuple[tuple[str, ...], str]:
    """(the tokens the owner last wrote under this root, the mark recorded with them)."""
    try:
        text = read_input_text(host.path(owner.record), 4096, errors="replace")
    except InputFileError:
        return (), ""
    lines = text.splitlines()
    tokens = tuple(lines[0].split()) if lines else ()
    return tokens, lines[1].strip() if len(lines) > 1 else ""


def current_tokens(owner: Owner, host: Host) -> tuple[str, ...]:
    """The owner's domain words the boot configuration holds now, as tokens (all places
    the writer knows)."""
    from mkkdumprd.crashkernel import zipl

    out: list[str] = []
    for p in _bls_entries(host):
        out += tokens_in(owner, "\n".join(line for line in read(host, p).splitlines()
                                          if line.startswith("options")))
    for p in [GRUB_DEFAULT] + [GRUB_D / n for n in sorted(host.listdir(GRUB_D))
                               if n.endswith(".cfg")] + [KERNEL_CMDLINE]:
        if host.is_file(p):
            out += tokens_in(owner, read(host, p))
    if host.is_file(zipl.ZIPL_CONF):
        out += [t for _, params in zipl.parameters(read(host, zipl.ZIPL_CONF))
                for t in tokens_in(owner, params)]
    return tuple(dict.fromkeys(out))


def _atomic_write(path: Path, text: str) -> None:
    """Replace a boot configuration file, keeping its permissions (0644 for a new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    atomic_write(path, text, mode)


def _write_or_fail(path: Path, text: str | None, shown: PurePosixPath) -> None:
    try:
        if text is None:
            path.unlink(missing_ok=True)
        else:
            _atomic_write(path, text)
    except OSError as exc:
        raise OperationError(f"cannot write {shown}: {exc.strerror or exc}; changing the boot "
                             "configuration needs root and a writable /etc") from None


def _record(plan: Plan, host: Host) -> None:
    if not plan.words:
        _write_or_fail(host.path(plan.owner.record), None, plan.owner.record)
        return
    _write_or_fail(host.path(plan.owner.record), plan.value + "\n"
                   + (plan.mark + "\n" if plan.mark else ""), plan.owner.record)


def perform(plan: Plan, host: Host) -> list[str]:
    """Write the plan's files atomically; run grubby (host.run) only on the live root and
    check the BLS entries it left. Returns the messages for the user."""
    done: list[str] = []
    for c in plan.changes:
        target = host.resolve(c.path) if c.follow else c.path
        _write_or_fail(host.path(target), c.new, c.path)
        verb = "removed" if c.new is None else "wrote"
        done.append(f"{verb} {c.path}" + (f" (through the link, {target})"
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
            for p in _bls_entries(host):
                for line in read(host, p).splitlines():
                    why = (plan.owner.conflicts(line, plan.words)
                           if line.startswith("options") and plan.words else [])
                    if why:
                        raise OperationError(f"{p}: after grubby, " + "; ".join(why))
            _record(plan, host)
        else:
            done.append(f"not running {PurePosixPath(plan.command[0]).name} for a root other "
                        f"than /; run inside {host.root}: {' '.join(plan.command)}")
    return done
