"""Write the crashkernel= words into the boot configuration of a root, showing the change first.
The backends, the one-set edit and the record live in bootconfig/writer.py (shared with
`pstore setup --apply`); this module is the crashkernel= owner and its rules.

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

import re
from collections.abc import Sequence

from mkkdumprd.bootconfig import writer
from mkkdumprd.bootconfig.owner import Owner
from mkkdumprd.bootconfig.writer import (  # noqa: F401  (the names this module always had)
    BLS_ENTRIES,
    GRUB_D,
    GRUB_DEFAULT,
    GRUBBY,
    KERNEL_CMDLINE,
    Change,
)
from mkkdumprd.crashkernel.parse import chosen_words, word_class
from mkkdumprd.errors import OperationError  # noqa: F401  (raised by perform, as always)
from mkkdumprd.host import Host
from mkkdumprd.lifecycle.locations import STATE_DIR

OUR_GRUB_CFG = GRUB_D / "mkkdumprd.cfg"
APPLIED = STATE_DIR / "crashkernel-applied"
RECOMMENDED_MARK = "recommended"

_NAME = "crashkernel="
# A crashkernel= word of its own (at a word start): the ones we replace or call hand-set.
_CK_WORD = re.compile(r'(?<!\S)crashkernel=(?:"[^"\n]*"|\S)*')


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


CRASHKERNEL = Owner(
    label=_NAME, command="mkkdumprd crashkernel apply", word=_CK_WORD, record=APPLIED,
    grub_cfg=OUR_GRUB_CFG, token=lambda w: w[len(_NAME):].strip('"'),
    to_word=lambda t: _NAME + t, conflicts=conflicts)


ApplyPlan = writer.Plan      # its `value`: the set's values without crashkernel=


def applied_record(host: Host) -> tuple[tuple[str, ...], bool]:
    """(the values `apply` last wrote under this root, whether they were a recommendation)."""
    values, mark = writer.applied_record(CRASHKERNEL, host)
    return values, mark == RECOMMENDED_MARK


def current_values(host: Host) -> tuple[str, ...]:
    """The crashkernel= values the boot configuration holds now (all places apply knows)."""
    return writer.current_tokens(CRASHKERNEL, host)


def plan_apply(host: Host, value: str | Sequence[str], force: bool = False,
               recommended: bool = False) -> ApplyPlan:
    """What applying the crashkernel= set `value` (one value, a space-separated string or a
    sequence; checked by grammar.check_set) to the root would change (nothing is written)."""
    from mkkdumprd.crashkernel.grammar import check_set

    raw = value.split() if isinstance(value, str) else list(value)
    values = check_set(raw)
    return writer.plan_write(CRASHKERNEL, host, [_NAME + v for v in values], force,
                             RECOMMENDED_MARK if recommended else "")


def perform(plan: ApplyPlan, host: Host) -> list[str]:
    """Write the plan's files atomically; run grubby (host.run) only on the live root and
    check the BLS entries it left. Returns the messages for the user."""
    return writer.perform(plan, host)
