"""mkkdumprd(8) and kdump.conf(5), generated at package build time from the sources --help
reads, so they cannot drift: the click command tree (every command and subcommand with its
usage, help and options) and the kdump.conf directive table (config/directives.py).

    python3 -m mkkdumprd.manpages OUTDIR     # writes OUTDIR/mkkdumprd.8, OUTDIR/kdump.conf.5

Everything text goes through `roff()`, the one escaping helper for man(7) input.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from mkkdumprd import __version__
from mkkdumprd.atomic_file import atomic_write


def roff(text: str) -> str:
    """Text as man(7) input: backslashes and hyphens escaped, no line read as a request."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").split("\n"):
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _quoted(text: str) -> str:
    """An argument of a macro line (.TH, .SS): double quotes cannot be escaped inside."""
    return '"' + roff(text).replace('"', "'") + '"'


def _header(name: str, section: int, title: str) -> list[str]:
    # A fixed date keeps the page reproducible; SOURCE_DATE_EPOCH is the build's date.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = time.strftime("%Y-%m-%d", time.gmtime(int(epoch))) if epoch else ""
    return [f".TH {_quoted(name.upper())} {section} {_quoted(date)} "
            f"{_quoted('mkkdumprd ' + __version__)} {_quoted(title)}"]


def _paragraphs(help_text: str) -> list[str]:
    """click's help text: paragraphs, `\\b` blocks kept as they are (no filling)."""
    lines: list[str] = []
    for para in help_text.strip().split("\n\n"):
        if para.startswith("\b\n") or para == "\b":
            lines += [".PP", ".nf", roff(para.removeprefix("\b").strip("\n")), ".fi"]
        else:
            lines += [".PP", roff(" ".join(p.strip() for p in para.splitlines()))]
    return lines


def _commands(ctx: click.Context) -> Iterator[click.Context]:
    """Every command under ctx's group, depth first, each in its own context."""
    group = ctx.command
    assert isinstance(group, click.Group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        yield sub
        if isinstance(cmd, click.Group):
            yield from _commands(sub)


def _options(ctx: click.Context) -> list[str]:
    lines: list[str] = []
    for param in ctx.command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        opts, text = record
        lines += [".TP", f".B {roff(opts)}", roff(text) if text else ""]
    return lines


def mkkdumprd_8(root: click.Group) -> str:
    """The page for the command tree under `root` (mkkdumprd.cli.main)."""
    ctx = click.Context(root, info_name="mkkdumprd")
    lines = _header("mkkdumprd", 8, "System Administration")
    summary = (root.help or "").strip().split("\n\n")[0]
    lines += [".SH NAME", f"mkkdumprd \\- {roff(summary.rstrip('.').lower()[:1])}"
              f"{roff(summary.rstrip('.')[1:])}",
              ".SH SYNOPSIS", ".B mkkdumprd",
              "[\\fB\\-\\-debug\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
              ".SH DESCRIPTION", *_paragraphs(root.help or ""),
              ".SH OPTIONS", *_options(ctx), ".SH COMMANDS"]
    for sub in _commands(ctx):
        cmd = sub.command
        path = sub.command_path
        usage = " ".join(cmd.collect_usage_pieces(sub))
        lines += [f".SS {_quoted(path)}", f".B {roff(path)}", roff(usage)]
        lines += _paragraphs(cmd.help or cmd.short_help or "")
        lines += _options(sub)
    lines += [".SH EXIT STATUS",
              "0 success; 1 the operation failed; 2 a usage or configuration error;",
              "3 from \\fBstatus\\fR: no crash kernel is loaded (as kdumpctl).",
              ".SH FILES", ".TP", ".B /etc/kdump.conf",
              "the configuration, see \\fBkdump.conf\\fR(5).",
              ".TP", ".B /boot/initramfs\\-\\fIKVER\\fBkdump.img",
              "the capture image (or under \\fB/var/lib/mkkdumprd/\\fR when /boot is not "
              "writable).",
              ".TP", ".B /etc/default/grub.d/mkkdumprd.cfg, mkkdumprd\\-ramoops.cfg",
              "the crashkernel= and ramoops words \\fBcrashkernel apply\\fR and \\fBpstore "
              "setup \\-\\-apply\\fR write on grub systems (update\\-grub reads them).",
              ".TP", ".B /etc/modules\\-load.d/mkkdumprd\\-ramoops.conf",
              "loads ramoops at boot where it is a module (\\fBpstore setup \\-\\-apply\\fR).",
              ".TP", ".B /var/lib/mkkdumprd/crashkernel\\-applied, ramoops\\-applied",
              "the words those commands wrote last: theirs to replace or remove.",
              ".SH SEE ALSO", "\\fBkdump.conf\\fR(5), \\fBmakedumpfile\\fR(8), \\fBkexec\\fR(8)"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DirectiveDoc:
    spellings: tuple[str, ...]
    doc: str
    example: str
    obsolete: tuple[str, ...] = ()  # still read, with a warning


def directive_docs() -> tuple[DirectiveDoc, ...]:
    """The rows of kdump.conf's directive table (config/directives.py), as the page needs
    them: the spellings (obsolete ones are listed under DEPRECATED instead), the one-line
    doc --help shows, and the row's example."""
    from mkkdumprd.config.directives import DIRECTIVES

    return tuple(DirectiveDoc(tuple(s for s in d.spellings if s not in d.obsolete), d.doc,
                              d.example(d.spellings[0]), tuple(d.obsolete))
                 for d in DIRECTIVES)


def kdump_conf_5(rows: tuple[DirectiveDoc, ...], deprecated: dict[str, str]) -> str:
    lines = _header("kdump.conf", 5, "File Formats")
    lines += [".SH NAME", "kdump.conf \\- what mkkdumprd's kdump capture image does",
              ".SH SYNOPSIS", ".B /etc/kdump.conf",
              ".SH DESCRIPTION",
              *_paragraphs("One directive per line: its name, blanks, its value (Fedora's "
                           "kdump.conf syntax; a value may be wrapped in double quotes). "
                           "Lines starting with # and blank lines are ignored. Unknown, "
                           "duplicated, empty and deprecated directives and two target lines "
                           "are errors, reported with file:line by `mkkdumprd config check`; "
                           "`mkkdumprd config show` prints the resolved configuration. "
                           "Without the file, Fedora's defaults apply."),
              ".SH DIRECTIVES"]
    for row in rows:
        lines += [".TP", ".B " + roff(", ".join(row.spellings)), roff(row.doc)]
        if row.obsolete:
            lines += [".PP", roff("Obsolete spelling, read with a warning: "
                                  + ", ".join(row.obsolete) + ".")]
        lines += [".RS", ".PP", "Example:", ".nf", roff(row.example), ".fi", ".RE"]
    lines += [".SH DEPRECATED DIRECTIVES",
              *_paragraphs("These are errors, each with what to write instead:")]
    for name, instead in deprecated.items():
        lines += [".TP", f".B {roff(name)}", roff(instead)]
    lines += [".SH FILES", ".B /etc/kdump.conf",
              ".SH SEE ALSO", "\\fBmkkdumprd\\fR(8), \\fBmakedumpfile\\fR(8)"]
    return "\n".join(lines) + "\n"


def write_pages(outdir: Path) -> tuple[Path, Path]:
    from mkkdumprd.cli import main
    from mkkdumprd.config.kdumpconf import DEPRECATED

    outdir.mkdir(parents=True, exist_ok=True)
    pages = ((outdir / "mkkdumprd.8", mkkdumprd_8(main)),
             (outdir / "kdump.conf.5", kdump_conf_5(directive_docs(), dict(DEPRECATED))))
    for path, text in pages:
        atomic_write(path, text, mode=0o644)
    return pages[0][0], pages[1][0]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m mkkdumprd.manpages OUTDIR")
    for page in write_pages(Path(sys.argv[1])):
        print(page)
