"""Errors users see: one clear sentence each, mapped to the CLI's exit codes.

Exit codes follow DESIGN.md: 1 = the operation failed, 2 = usage or configuration error,
plus 4 = the data mkkdumprd ships (mkkdumprd/data/: modules.d, templates, arch) is broken,
which is a bug or a damaged installation, not the user's input. (`status` exits 3 when no
crash kernel is loaded, as kdumpctl does; that is an answer, not an error.)
"""

from dataclasses import dataclass


class MkkdumprdError(Exception):
    """Base of every error that the CLI prints as one sentence (no traceback)."""

    exit_code = 1


class OperationError(MkkdumprdError):
    """Something the tool tried failed (I/O, a syscall, a dump target)."""

    exit_code = 1


class UsageError(MkkdumprdError):
    """The user asked for something impossible: bad argument, missing input file."""

    exit_code = 2


class ShippedDataError(MkkdumprdError):
    """A file mkkdumprd ships is malformed: the message names the file and the key or line.

    Not the user's fault, so not exit 2: reinstalling or reporting the bug is the fix.
    """

    exit_code = 4


def error_line(exc: MkkdumprdError) -> str:
    """What a command prints for `exc` on stderr (one line per problem)."""
    if isinstance(exc, ShippedDataError):
        return (f"mkkdumprd: error: {exc} (this file ships with mkkdumprd: reinstall it or "
                f"report a bug)")
    return f"mkkdumprd: error: {exc}"


@dataclass(frozen=True)
class Location:
    """A place in an input file, for messages like `kdump.conf:12: ...`."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class ConfigError(UsageError):
    """One or more configuration errors, each tied to file:line."""

    def __init__(self, problems: "list[tuple[Location | None, str]]") -> None:
        self.problems = problems
        super().__init__(
            "\n".join(f"{loc}: {msg}" if loc else msg for loc, msg in problems)
        )
