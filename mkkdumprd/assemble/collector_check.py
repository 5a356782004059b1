"""core_collector's makedumpfile options, checked by the makedumpfile that will run them.

makedumpfile has no "check these options" mode, and its option table differs between
versions, so the binary itself is asked: it runs with the configured options and a vmcore
path that does not exist. Options it accepts get it as far as opening that path (it names
the path in its error: "Can't open the dump memory(PATH)"); options it rejects make it say
so first (`unrecognized option`, `Dump_level(99) is invalid`). Plain `-d 31` is asked
first: a binary that does not answer it that way (another wording) is not judged. Nothing
is read or
written: the input does not exist, stdin is empty, and the output path is in a directory
that does not exist either.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mkkdumprd.config.model import Action, KdumpConfig, TargetKind

MISSING_DIR = "/nonexistent-mkkdumprd-collector-check"
VMCORE = f"{MISSING_DIR}/vmcore"
OUTPUT = f"{MISSING_DIR}/out"
TIMEOUT = 20.0

Runner = Callable[[list[str]], tuple[int, str]]


@dataclass(frozen=True)
class Verdict:
    """accepted: the binary took the options. Else `message` says why (a rejection), or,
    with `unknown`, why the binary could not be asked."""

    accepted: bool
    message: str = ""
    unknown: bool = False


def _run(argv: list[str]) -> tuple[int, str]:
    # one stream, in the order written: getopt's complaint comes before makedumpfile's
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, errors="replace", timeout=TIMEOUT,
                       env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                            "LC_ALL": "C"})
    return r.returncode, r.stdout


def probe_argv(binary: Path, argv: Sequence[str], streamed: bool) -> list[str]:
    """The invocation: the options as configured, except that a --message-level is raised
    to 31 (only the messages depend on it, and they are what is read back)."""
    opts: list[str] = []
    rest = list(argv[1:])
    while rest:
        a = rest.pop(0)
        if a == "--message-level" and rest:
            rest.pop(0)
            continue
        if a.startswith("--message-level="):
            continue
        opts.append(a)
    files = [VMCORE] if streamed else [VMCORE, OUTPUT]
    return [str(binary), "--message-level", "31", *opts, *files]


def check_options(binary: Path, argv: Sequence[str], *, streamed: bool,
                  run: Runner = _run) -> Verdict:
    """Whether `binary` (a makedumpfile) accepts the options of `argv` (argv[0] is ignored).

    `streamed`: the collector writes a flattened stream to stdout (-F), so it takes one
    file argument, not two.
    """
    try:
        plain = ("makedumpfile", "-F", "-d", "31") if streamed else ("makedumpfile", "-d", "31")
        if not _accepted(run(probe_argv(binary, plain, streamed))[1]):
            return Verdict(False, f"{binary} does not answer as makedumpfile 1.7 does, so "
                           "the core_collector options were not checked", unknown=True)
        _, out = run(probe_argv(binary, argv, streamed))
    except subprocess.TimeoutExpired:
        return Verdict(False, f"{binary} did not answer within {TIMEOUT:.0f} s", unknown=True)
    except OSError as exc:
        return Verdict(False, f"cannot run {binary}: {exc.strerror}", unknown=True)
    if _accepted(out):
        return Verdict(True)
    lines = [line.strip().removeprefix(f"{binary}: ").rstrip(".")
             for line in out.splitlines() if line.strip() and not line.startswith(_NOISE)]
    return Verdict(False, "; ".join(lines[:2]) or "it rejected them without a message")


# The banner of --message-level 31 and the trailer of every failure.
_NOISE = ("Try `", "makedumpfile Failed", "makedumpfile: version ", "command line: ")


def _accepted(out: str) -> bool:
    return f"memory({VMCORE})" in out


def collector_problems(config: KdumpConfig, binary: Path | None,
                       run: Runner = _run) -> tuple[list[str], list[str]]:
    """(errors, warnings) for config's core_collector checked by `binary` (the makedumpfile
    that will run it; None: none here to ask). Each variant the image runs is checked: the
    stream (-F) for raw/ssh targets, the file form for filesystem targets and for
    failure_action dump_to_rootfs."""
    from mkkdumprd.assemble.builder import collector_argv

    argv = config.core_collector
    if not argv or PurePosixPath(argv[0]).name != "makedumpfile":
        return [], []
    shown = shlex.join(argv)
    where = config.location("core_collector")
    at = f"{where}: " if where else ""
    if binary is None:
        return [], [f"{at}makedumpfile is not installed here, so the options of core_collector "
                    f"{shown!r} were not checked"]
    fs, stream = collector_argv(config)
    variants = []
    kinds = {t.kind for t in config.targets}
    if kinds & {TargetKind.RAW, TargetKind.SSH}:
        variants.append((stream, True))
    if kinds & {TargetKind.LOCAL, TargetKind.NFS} or \
            config.failure_action is Action.DUMP_TO_ROOTFS:
        variants.append((fs, False))
    errors: list[str] = []
    warnings: list[str] = []
    for variant, streamed in variants:
        verdict = check_options(binary, variant, streamed=streamed, run=run)
        if verdict.unknown:
            warnings.append(f"{at}{verdict.message}")
        elif not verdict.accepted:
            errors.append(f"{at}core_collector {shlex.join(variant)!r} is refused by {binary}: "
                          f"{verdict.message}; the dump would fail at crash time")
    return list(dict.fromkeys(errors)), list(dict.fromkeys(warnings))
