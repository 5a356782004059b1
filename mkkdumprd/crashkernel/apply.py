"""Write crashkernel= into the boot configuration of a root, showing the change first.

Three kinds of boot configuration, tried in this order:
  grubby         /usr/sbin/grubby exists (Fedora, RHEL, SUSE with grubby): we run
                 `grubby --update-kernel=ALL --args=crashkernel=V` on the live root only;
                 for any other --root we print the command. The diff shows the BLS entries.
  grub.d         /etc/default/grub or /etc/default/grub.d exists (Debian, Ubuntu): our own
                 /etc/default/grub.d/mkkdumprd.cfg appends to GRUB_CMDLINE_LINUX_DEFAULT;
                 update-grub has to run afterwards (we remind, we do not run it).
  kernel-cmdline /etc/kernel/cmdline (kernel-install, systemd-boot, UKIs): the word is
                 replaced or added in place; a missing file is seeded from /proc/cmdline.
A crashkernel= the user set by hand elsewhere is left alone unless force is given; with
force our value is written where the kernel sees it last, so it wins (last word wins).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.atomic_file import atomic_write
from mkkdumprd.errors import OperationError
from mkkdumprd.host import Host
from mkkdumprd.loader.cmdline import split_words

GRUBBY = PurePosixPath("/usr/sbin/grubby")
GRUB_DEFAULT = PurePosixPath("/etc/default/grub")
GRUB_D = PurePosixPath("/etc/default/grub.d")
OUR_GRUB_CFG = GRUB_D / "mkkdumprd.cfg"
KERNEL_CMDLINE = PurePosixPath("/etc/kernel/cmdline")
BLS_ENTRIES = PurePosixPath("/boot/loader/entries")

_CK = re.compile(r'(?<![\w.-])crashkernel=("[^"]*"|\S+)')
_HEADER = "# Written by `mkkdumprd crashkernel apply`; run update-grub after changing it.\n"



@dataclass(frozen=True)
class Change:
    path: PurePosixPath          # inside the root
    old: str | None              # None: the file does not exist yet
    new: str


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
    out: list[str] = []
    placed = False
    for w in split_words(line):
        if w.startswith("crashkernel="):
            if not placed:
                out.append(f"crashkernel={value}")
                placed = True
            continue
        out.append(w)
    if not placed:
        out.append(f"crashkernel={value}")
    return " ".join(out)


def _grubby_plan(host: Host, value: str, force: bool) -> ApplyPlan:
    kept: list[str] = []
    preview: list[Change] = []
    sources: list[tuple[str, str]] = []
    for name in host.listdir(BLS_ENTRIES):
        if name.endswith(".conf"):
            p = BLS_ENTRIES / name
            sources.append((str(p), host.read_text(p)))
    if host.is_file(GRUB_DEFAULT):
        sources.append((str(GRUB_DEFAULT), host.read_text(GRUB_DEFAULT)))
    for where, text in sources:
        kept += [f"{where}: crashkernel={v}" for v in _values(text) if v != value]
    if kept and not force:
        return ApplyPlan("grubby", value, (), (), None, tuple(kept),
                         ("crashkernel= is already set by hand; left alone (use --force)",))
    for name in host.listdir(BLS_ENTRIES):
        if not name.endswith(".conf"):
            continue
        p = BLS_ENTRIES / name
        old = host.read_text(p)
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
    for p in candidates:
        if host.is_file(p):
            kept += [f"{p}: crashkernel={v}" for v in _values(host.read_text(p))]
    if kept and not force:
        return ApplyPlan("grub.d", value, (), (), None, tuple(kept),
                         ("crashkernel= is already set by hand; left alone (use --force)",))
    old = host.read_text(OUR_GRUB_CFG) if host.is_file(OUR_GRUB_CFG) else None
    new = (_HEADER + 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT '
           f'crashkernel={value}"\n')
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
    if host.is_file(KERNEL_CMDLINE):
        old: str | None = host.read_text(KERNEL_CMDLINE)
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
                        if not w.startswith(("BOOT_IMAGE=", "initrd=")))
        notes.append(f"{KERNEL_CMDLINE} did not exist; seeded from /proc/cmdline")
    kept = [f"{KERNEL_CMDLINE}: crashkernel={v}" for v in _values(base) if v != value]
    if kept and not force:
        return ApplyPlan("kernel-cmdline", value, (), (), None, tuple(kept),
                         ("crashkernel= is already set by hand; left alone (use --force)",))
    new = _set_word(base.strip(), value) + "\n"
    notes.append("the next `kernel-install add` (kernel update) puts it into the boot entry")
    if old == new:
        return ApplyPlan("kernel-cmdline", value, (), (), None, (), ("already set; nothing to do",))
    return ApplyPlan("kernel-cmdline", value, (Change(KERNEL_CMDLINE, old, new),), (), None,
                     tuple(kept), tuple(notes))


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


def perform(plan: ApplyPlan, host: Host) -> list[str]:
    """Write the plan's files atomically; run grubby (host.run) only on the live root.

    Returns the messages for the user.
    """
    done: list[str] = []
    for c in plan.changes:
        try:
            _atomic_write(host.path(c.path), c.new)
        except OSError as exc:
            raise OperationError(f"cannot write {c.path}: {exc.strerror}; changing the boot "
                                 "configuration needs root and a writable /etc") from None
        done.append(f"wrote {c.path}")
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
