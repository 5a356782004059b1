"""fence_kdump_nodes and fence_kdump_args: what fence-agents' fence_kdump_send accepts.

The sender is `fence_kdump_send [-p PORT] [-f auto|ipv4|ipv6] [-c COUNT] [-i INTERVAL] [-v]
NODE...` (ClusterLabs/fence-agents: agents/kdump/fence_kdump_send.c; long forms --ipport,
--family, --count, --interval, --verbose). Its arguments are checked here, when kdump.conf
is read, and kept as normalised words (short options, one value each) so the capture image
passes exactly what was checked. Fedora's kdumpctl refuses nodes that name this host; the
build does the same (the network plan refuses an address of the machine itself).
"""

from __future__ import annotations

import re

# option -> (long name, what its value must be); None: a flag.
_OPTIONS = {"-p": ("--ipport", "port"), "-f": ("--family", "family"),
            "-c": ("--count", "count"), "-i": ("--interval", "interval"),
            "-v": ("--verbose", None)}
_LONG = {long: short for short, (long, _) in _OPTIONS.items()}
FAMILIES = ("auto", "ipv4", "ipv6")
_NODE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:%-]*")
DEFAULT_PORT = 7410


def _check(kind: str, value: str) -> str | None:
    if kind == "family":
        return None if value in FAMILIES else f"must be one of {', '.join(FAMILIES)}"
    if not value.isascii() or not value.isdigit():
        return "must be a number"
    n = int(value)
    if kind == "port" and not 1 <= n <= 65535:
        return "must be a port from 1 to 65535"
    if kind == "interval" and not 1 <= n <= 3600:
        return "must be seconds from 1 to 3600"
    if kind == "count" and n > 1_000_000:
        return "must be at most 1000000 (0: until the dump ends)"
    return None


def parse_args(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The normalised words and the problems (one sentence each)."""
    out: list[str] = []
    problems: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        short = _LONG.get(name, name)
        if short not in _OPTIONS:
            problems.append(f"{word!r} is not a fence_kdump_send option (use -p PORT, "
                            f"-f {'|'.join(FAMILIES)}, -c COUNT, -i SECONDS, -v; the nodes "
                            "go in fence_kdump_nodes)")
            continue
        kind = _OPTIONS[short][1]
        if kind is None:
            if eq:
                problems.append(f"{name} takes no value")
            out.append(short)
            continue
        if not eq:
            if i >= len(words):
                problems.append(f"{word} needs a value")
                continue
            value = words[i]
            i += 1
        err = _check(kind, value)
        if err:
            problems.append(f"{word} {value!r}: {err}" if not eq else f"{word!r}: {err}")
            continue
        out += [short, value]
    return tuple(out), problems


def check_node(node: str) -> str | None:
    if not _NODE.fullmatch(node):
        return (f"fence_kdump node {node!r} is not a host name or an IP address "
                "(one word each, separated by spaces)")
    return None


def port(args: tuple[str, ...]) -> int:
    """The UDP port the sender uses (its last -p, else 7410)."""
    found = [int(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "-p"]
    return found[-1] if found else DEFAULT_PORT
