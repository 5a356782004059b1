"""Class (c) of issue 14: every file mkkdumprd writes goes through atomic_file (a temp file
in the same directory, fsync, rename), so a reader never sees a torn file and a symlink at
the destination is replaced, not followed, unless the writer resolves it on purpose
(hooks.conf, crashkernel apply's files). This test keeps other write paths out of the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mkkdumprd"

# The only writes that are not atomic replacements, and why.
ALLOWED = {
    # the flock file: opened O_NOFOLLOW in a 0700 directory of ours, never replaced
    ("lifecycle/lock.py", "O_CREAT"),
    ("lifecycle/lock.py", "O_RDWR"),
    # zeroing the recovered dump's header (or marking a cut one failed) on the raw device
    ("lifecycle/savecore.py", "O_WRONLY"),
    # `mkkdumprd test`'s sysrq c: /proc/sysrq-trigger is no file to replace
    ("loader/live.py", "open-for-write"),
    # `test --vm` writes only in its own fresh work folder, files nothing else reads
    # while they are written: the QEMU command and console log, opening /dev/kvm to ask
    # its API version, sparse scratch disks, the stand-in servers' configs and keys, the
    # loader tracer's fake root, the rebuild's private known_hosts and the vmcore.flat
    # --real-target reads back
    ("vmtest/qemu.py", "O_RDWR"),
    ("vmtest/qemu.py", "open-for-write"),
    ("vmtest/qemu.py", "write_text"),
    ("vmtest/scratch.py", "open-for-write"),
    ("vmtest/servers.py", "open-for-write"),
    ("vmtest/servers.py", "write_text"),
    ("vmtest/loader_trace.py", "write_bytes"),
    ("vmtest/loader_trace.py", "write_text"),
    ("vmtest/rebuild.py", "write_text"),
    ("vmtest/real_target.py", "open-for-write"),
    # the up-to-date recorder names the write flags to recognise a write it sees: it
    # writes nothing (the stamp goes through atomic_file)
    ("uptodate/recorder.py", "O_WRONLY"),
    ("uptodate/recorder.py", "O_RDWR"),
    ("uptodate/recorder.py", "O_CREAT"),
    ("uptodate/recorder.py", "O_APPEND"),
    # a configfs attribute (crash_dm_crypt_keys/<item>/description): configfs has no
    # temp files or rename, an attribute is written in place
    ("loader/crypt_keys.py", "write_text"),
}
WRITERS = {"write_text", "write_bytes", "O_CREAT", "O_WRONLY", "O_RDWR", "O_APPEND",
           "touch", "mkstemp", "NamedTemporaryFile"}


def _uses(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in WRITERS:
            found.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "open" and len(node.args) > 1:
            mode = node.args[1]
            if not (isinstance(mode, ast.Constant) and str(mode.value).startswith("r")):
                found.add("open-for-write")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "open":
            for kw in node.keywords:
                if kw.arg == "mode" and not (isinstance(kw.value, ast.Constant)
                                             and str(kw.value.value).startswith("r")):
                    found.add("open-for-write")
            if node.args and isinstance(node.args[0], ast.Constant) \
                    and not str(node.args[0].value).startswith("r"):
                found.add("open-for-write")
    return found


def test_only_atomic_file_writes() -> None:
    seen = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel == "atomic_file.py":
            continue
        for use in _uses(ast.parse(path.read_text())):
            seen.add((rel, use))
    assert seen - ALLOWED == set()
    assert seen >= ALLOWED        # stale exceptions are removed, not kept
