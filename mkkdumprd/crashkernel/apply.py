"""Write crashkernel= into the boot configuration of a root, showing the change first.

Three kinds of boot configuration, tried in this order:
  grubby         /usr/sbin/grubby exists (Fedora, RHEL, SUSE with grubby): we run
                 `grubby --update-kernel=ALL --args=crashkernel=V` on the live root only;
                 for any other --root we print the command. The diff shows the BLS entries.
  grub.d         /etc/default/grub or /etc/default/grub.d exists (Debian, Ubuntu): our own
                 /etc/default/grub.d/mkkdumprd.cfg appends to GRUB_CMDLINE_LINUX_DEFAULT;
                 update-grub has to run afterwards (we remind, we do not run it).
  kernel-cmdline /etc/kernel/cmdline (kernel-install, systemd-boot, UKIs): only the
                 crashkernel= words change (the first is replaced, later ones removed, or
                 one is added at the end of the first line); every other byte stays, and
                 a symlinked file is written through its link. A missing file is seeded
                 from /proc/cmdline.
A crashkernel= the user set by hand elsewhere is left alone unless force is given; with
force our value is written where the kernel sees it last, so it wins (last word wins).
The value we last wrote is remembered in the state directory (APPLIED), so it is
recognised as ours later and replaced without --force.

Values go through quoting.py: `kernel_word` for kernel command line files,
`grub_append_line` for the grub defaults file (the CLI has already checked the value
against the canonical grammar, crashkernel/grammar.py).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.input_file import InputFileError, read_input_text
from mkkdumprd.lifecycle.locations import STATE_DIR
from mkkdumprd.loader.cmdline import split_words
from mkkdumprd.quoting import grub_append_line, kernel_word

GRUBBY = PurePosixPath("/usr/sbin/grubby")
GRUB_DEFAULT = PurePosixPath("/etc/default/grub")
GRUB_D = PurePosixPath("/etc/default/grub.d")
OUR_GRUB_CFG = GRUB_D / "mkkdumprd.cfg"
KERNEL_CMDLINE = PurePosixPath("/etc/kernel/cmdline")
BLS_ENTRIES = PurePosixPath("/boot/loader/entries")
APPLIED = STATE_DIR / "crashkernel-applied"

_CK = re.compile(r'(?<![\w.-])crashkernel=("[^"]*"|\S+)')
_HEADER = "# Written by `mkkdumprd crashkernel apply`; run update-grub after changing it.\n"



@dataclass(frozen=True)
class Change:
    path: PurePosixPath          # inside the root
    old: str | None              # None: the file does not exist yet
    new: str
    follow: bool = False         # write through a symlink at `path` (to its target)


@dataclass(frozen=True)
class ApplyPlan:
    kind: str                    # "grubby", "grub.d", "kernel-cmdline"
    value: str
    changes: tuple[Change, ...]  # files we write (grub.d, kernel-cmdline)
    preview: tuple[Change, ...]  # what grubby would do, shown only
    command: tuple[str, ...] | None
    kept: tuple[str, ...]        # hand-set values found and left alone
    notes: tuple[str, ...]

    @property
    def needed(self) -> bool:
        return bool(self.changes or self.command)

    def diff(self) -> str:
        out: list[str] = []
        for c in (*self.changes, *self.preview):
            out.extend(difflib.unified_diff(
                (c.old or "").splitlines(keepends=True), c.new.splitlines(keepends=True),
                fromfile=f"a{c.path}" if c.old is not None else "/dev/null",
                tofile=f"b{c.path}"))
        return "".join(x if x.endswith("\n") else x + "\n" for x in out)


def _values(text: str) -> list[str]:
    """crashkernel= values in `text`, skipping shell/BLS comment lines."""
    return [v.strip('"') for line in text.splitlines() if not line.lstrip().startswith("#")
            for v in _CK.findall(line)]


def _set_word(line: str, value: str) -> str:
    """`line` (kernel words) with one crashkernel=`value`, where the first one was or at the end."""
    word = kernel_word(f"crashkernel={value}")
    out: list[str] = []
    placed = False
    for w in split_words(line):
        if w.startswith("crashkernel="):
            if not placed:
                out.append(word)
                placed = True
            continue
        out.append(w)
    if not placed:
        out.append(word)
    return " ".join(out)


_CK_WORD = re.compile(r'(?<!\S)crashkernel=(?:"[^"\n]*"|\S)*')


def _edit_words(text: str, value: str) -> str:
    """`text` with its crashkernel= words set to `value`, every other byte unchanged: the
    first word is replaced, later ones are removed with the blanks before them; with none,
    the word is added at the end of the first line."""
    word = kernel_word(f"crashkernel={value}")
    out: list[str] = []
    pos = 0
    placed = False
    for m in _CK_WORD.finditer(text):
        if not placed:
            out.append(text[pos:m.start()] + word)
            placed = True
        else:
            out.append(text[pos:m.start()].rstrip(" \t"))
        pos = m.end()
    out.append(text[pos:])
    if placed:
        return "".join(out)
    first, nl, rest = text.partition("\n")
    sep = " " if first.strip() else ""
    return first.rstrip(" \t") + sep + word + (nl or "\n") + rest


def _grubby_plan(host: Host, value: str, force: bool) -> ApplyPlan:
    kept: list[str] = []
    preview: list[Change] = []
    sources: list[tuple[str, str]] = []
    for name in host.listdir(BLS_ENTRIES):
        if name.endswith(".conf"):
            p = BLS_ENTRIES / name
            sources.append((str(p), _read(host, p)))
    if host.is_file(GRUB_DEFAULT):
        sources.append((str(GRUB_DEFAULT), _read(host, GRUB_DEFAULT)))
    ours = _our_value(host)
    for where, text in sources:
        kept += [f"{where}: crashkernel={v}" for v in _values(text) if v not in (value, ours)]
    if kept and not force:
        return ApplyPlan("grubby", value, (), (), None, tuple(kept),
                         ("crashkernel= is already set by hand; left alone (use --force)",))
    for name in host.listdir(BLS_ENTRIES):
        if not name.endswith(".conf"):
            continue
        p = BLS_ENTRIES / name
        old = _read(host, p)
        new = "".join(
            (re.sub(r"^(options\s+)(.*)$", lambda m: m.group(1) + _set_word(m.group(2), value),
                    line.rstrip("\n")) + ("\n" if line.endswith("\n") else ""))
            if line.startswith("options") else line
            for line in old.splitlines(keepends=True))
        if new != old:
            preview.append(Change(p, old, new))
    cmd = (str(GRUBBY), "--update-kernel=ALL", f"--args=crashkernel={value}")
    has_bls = any(n.endswith(".conf") for n in host.listdir(BLS_ENTRIES))
    if has_bls and not preview:
        return ApplyPlan("grubby", value, (), (), None, (), ("already set; nothing to do",))
    return ApplyPlan("grubby", value, (), tuple(preview), cmd, tuple(kept), ())


def _grub_d_plan(host: Host, value: str, force: bool) -> ApplyPlan:
    kept: list[str] = []
    candidates = [GRUB_DEFAULT] + [GRUB_D / n for n in host.listdir(GRUB_D)
                                   if n.endswith(".cfg") and GRUB_D / n != OUR_GRUB_CFG]
    ours = _our_value(host)
    for p in candidates:
        if host.is_file(p):
            kept += [f"{p}: crashkernel={v}" for v in _values(_read(host, p))
                     if v not in (value, ours)]
    if kept and not force:
        return ApplyPlan("grub.d", value, (), (), None, tuple(kept),
                         ("crashkernel= is already set by hand; left alone (use --force)",))
    old = _read(host, OUR_GRUB_CFG) if host.is_file(OUR_GRUB_CFG) else None
    new = _HEADER + grub_append_line("GRUB_CMDLINE_LINUX_DEFAULT", f"crashkernel={value}")
    notes = ["run `update-grub` (or `grub-mkconfig -o /boot/grub/grub.cfg`) and reboot"]
    if kept:
        notes.insert(0, f"{OUR_GRUB_CFG.name} is read after the other files, so its "
                     "crashkernel= comes last on the command line and wins")
    if old == new:
        return ApplyPlan("grub.d", value, (), (), None, tuple(kept),
                         ("already set; nothing to do",))
    return ApplyPlan("grub.d", value, (Change(OUR_GRUB_CFG, old, new),), (), None,
                     tuple(kept), tuple(notes))


def _kernel_cmdline_plan(host: Host, value: str, force: bool) -> ApplyPlan:
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
    ours = _our_value(host)
    kept = [f"{KERNEL_CMDLINE}: crashkernel={v}" for v in _values(base)
            if v not in (value, ours)]
    if kept and not force:
        return ApplyPlan("kernel-cmdline", value, (), (), None, tuple(kept),
                         ("crashkernel= is already set by hand; left alone (use --force)",))
    new = _edit_words(base, value)
    notes.append("the next `kernel-install add` (kernel update) puts it into the boot entry")
    if old == new:
        return ApplyPlan("kernel-cmdline", value, (), (), None, (), ("already set; nothing to do",))
    return ApplyPlan("kernel-cmdline", value,
                     (Change(KERNEL_CMDLINE, old, new, follow=True),), (), None,
                     tuple(kept), tuple(notes))


def _read(host: Host, p: PurePosixPath) -> str:
    """A boot configuration file: regular, bounded, UTF-8 (a one-line error otherwise)."""
    try:
        return read_input_text(host.path(host.resolve(p)))
    except InputFileError as exc:
        raise OperationError(f"cannot read {p}: {exc.reason}") from None


def _our_value(host: Host) -> str | None:
    """The value `apply` last wrote under this root (so it is not taken as hand-set)."""
    try:
        text = read_input_text(host.path(APPLIED), 4096, errors="replace").strip()
    except InputFileError:
        return None
    return text or None


def plan_apply(host: Host, value: str, force: bool = False) -> ApplyPlan:
    """What applying crashkernel=`value` to the root would change (nothing is written)."""
    if host.is_file(GRUBBY):
        return _grubby_plan(host, value, force)
    if host.is_file(GRUB_DEFAULT) or host.is_dir(GRUB_D):
        return _grub_d_plan(host, value, force)
    return _kernel_cmdline_plan(host, value, force)


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


def perform(plan: ApplyPlan, host: Host) -> list[str]:
    """Write the plan's files atomically; run grubby (host.run) only on the live root.

    Returns the messages for the user.
    """
    done: list[str] = []
    for c in plan.changes:
        target = host.resolve(c.path) if c.follow else c.path
        _write_or_fail(host.path(target), c.new, c.path)
        done.append(f"wrote {c.path}" + (f" (through the link, {target})"
                                           if target != c.path else ""))
    if plan.changes:
        _write_or_fail(host.path(APPLIED), plan.value + "\n", APPLIED)
    if plan.command:
        if host.is_live:
            res = host.run(plan.command, None)
            if res.returncode != 0:
                raise OperationError(
                    f"`{' '.join(plan.command)}` failed (exit {res.returncode}): "
                    f"{(res.stderr or res.stdout).strip()}")
            done.append(f"ran {' '.join(plan.command)}")
        else:
            done.append(f"not running grubby for a root other than /; run inside {host.root}: "
                        f"{' '.join(plan.command)}")
    return done
