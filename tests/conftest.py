"""The kexec guard: no test may reach this machine's kernel, whatever it swallows.

Autouse for every test. It fails the test (at teardown, so an exception the code under test
or click's CliRunner caught does not hide it) when anything
  - uses the running kernel that loader/live.py hands out (replaced by a recording refusal;
    a test that simulates a machine sets live.RUNNING to its own fake tree and fakes),
  - reaches `kexec.real_syscall` or `kexec_tools.run_kexec` through any other reference
    (their refusal check records the attempt),
  - executes a program named kexec (subprocess, os.exec*, os.posix_spawn*, os.system),
  - crashes this machine: live.RUNNING's crash (`mkkdumprd test` without --vm), or opens
    /proc/sysrq-trigger for writing through open() or os.open(),
and sets MKKDUMPRD_FORBID_KEXEC so child processes (the CLI run as a subprocess) refuse too.
A test that reaches a refusal on purpose takes the `kexec_guard` fixture, asserts what it
recorded and clears it.

Also the fixtures shared by unit and VM tests (the Debian test kernel). Shared helpers that
are not fixtures live in tests/support/ (fake trees, sysroots, the fake kexec_file_load,
synthetic kernel images); test modules import from there, never from each other.
"""

from __future__ import annotations

import builtins
import io
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mkkdumprd.host import Host
from mkkdumprd.loader import kexec, kexec_tools, live
from tests.support import sharding
from tests.support.debian_kernel import Kernel, debian_kernel

SYSRQ_TRIGGER = "/proc/sysrq-trigger"
_KEXEC_WORD = re.compile(r"(^|[\s/;&|(])kexec(\s|$)")


def _names_kexec(argv: Any, executable: Any = None) -> bool:
    if executable is not None and os.path.basename(os.fsdecode(executable)) == "kexec":
        return True
    if isinstance(argv, (str, bytes)):
        return bool(_KEXEC_WORD.search(os.fsdecode(argv)))
    if isinstance(argv, os.PathLike):
        return os.path.basename(os.fspath(argv)) == "kexec"
    words = list(argv) if argv is not None else []
    return bool(words) and os.path.basename(os.fsdecode(words[0])) == "kexec"


@pytest.fixture(autouse=True)
def kexec_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    attempts: list[str] = []
    monkeypatch.setenv("MKKDUMPRD_FORBID_KEXEC", "1")

    def refusal(what: str) -> Callable[[], str]:
        def forbidden() -> str:
            attempts.append(what)
            return "pytest is imported"
        return forbidden

    monkeypatch.setattr(kexec, "_forbidden", refusal("real_syscall"))
    monkeypatch.setattr(kexec_tools, "_forbidden", refusal("run_kexec"))
    monkeypatch.setattr(live, "_crash_forbidden", refusal("real_crash"))

    def live_syscall(nr: int, kfd: int, ifd: int, n: int, cmdline: bytes | None,
                     flags: int) -> None:
        attempts.append(f"live kexec_file_load(flags={flags:#x})")
        raise kexec.KexecForbidden("the kexec guard refused the live kexec_file_load")

    def live_runner(host: Host, argv: Sequence[str], kallsyms: str | None
                    ) -> tuple[int, str]:
        attempts.append(f"live kexec-tools {list(argv)}")
        raise kexec.KexecForbidden("the kexec guard refused to run kexec-tools")

    def live_crash() -> None:
        attempts.append("live sysrq crash")
        raise kexec.KexecForbidden("the kexec guard refused to crash this machine")

    monkeypatch.setattr(live, "RUNNING",
                        live.Kernel(Path("/"), live_syscall, live_runner, live_crash))

    def is_sysrq(path: Any) -> bool:
        try:
            return os.path.realpath(os.fsdecode(path)) == SYSRQ_TRIGGER
        except (TypeError, ValueError):
            return False

    real_open = builtins.open
    real_os_open = os.open

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if not isinstance(file, int) and is_sysrq(file) and set(mode) & set("wax+"):
            attempts.append(f"open({file!r}, {mode!r})")
            raise PermissionError("the kexec guard refused to write /proc/sysrq-trigger")
        return real_open(file, mode, *args, **kw)

    def guarded_os_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if is_sysrq(path) and flags & (os.O_WRONLY | os.O_RDWR):
            attempts.append(f"os.open({path!r})")
            raise PermissionError("the kexec guard refused to write /proc/sysrq-trigger")
        return real_os_open(path, flags, *args, **kw)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)       # pathlib's door
    monkeypatch.setattr(os, "open", guarded_os_open)

    real_execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def execute_child(self: subprocess.Popen[Any], args: Any, executable: Any,
                      *rest: Any, **kw: Any) -> Any:
        if _names_kexec(args, executable):
            attempts.append(f"exec {args!r}")
            raise PermissionError("the kexec guard refused to execute kexec")
        return real_execute(self, args, executable, *rest, **kw)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", execute_child)

    def exec_guard(name: str) -> Callable[..., Any]:
        real = getattr(os, name)

        def guarded(path: Any, *args: Any, **kw: Any) -> Any:
            if _names_kexec([path]):
                attempts.append(f"os.{name}({path!r})")
                raise PermissionError("the kexec guard refused to execute kexec")
            return real(path, *args, **kw)
        return guarded

    for name in ("execv", "execve", "execvp", "execvpe", "execl", "execlp", "execle",
                 "execlpe", "posix_spawn", "posix_spawnp"):
        monkeypatch.setattr(os, name, exec_guard(name))
    real_system = os.system

    def system(command: str) -> int:
        if _names_kexec(command):
            attempts.append(f"os.system({command!r})")
            raise PermissionError("the kexec guard refused to execute kexec")
        return real_system(command)

    monkeypatch.setattr(os, "system", system)

    yield attempts
    if attempts:
        pytest.fail(f"the test reached this machine's kernel or kexec: {attempts}",
                    pytrace=False)


@pytest.fixture(scope="session")
def kernel() -> Kernel:
    """The real Debian test kernel (vmlinuz and its modules), downloaded once and cached."""
    return debian_kernel()


@pytest.fixture(scope="session")
def vmlinuz(kernel: Kernel) -> Path:
    return kernel.vmlinuz


@pytest.hookimpl(trylast=True)   # after -m has deselected what the run leaves out
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """MKKDUMPRD_TEST_SHARD=I/N (dev/test): keep only this process's share of the selected
    tests, whole files at a time (tests/support/sharding.py)."""
    value = os.environ.get("MKKDUMPRD_TEST_SHARD")
    if not value:
        return
    try:
        me, shards = sharding.parse(value)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    def file_of(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    weights: dict[str, float] = {}
    for item in items:
        w = sharding.weight(m.name for m in item.iter_markers())
        weights[file_of(item)] = weights.get(file_of(item), 0.0) + w
    shard_of = sharding.assign(weights, shards)
    keep = [i for i in items if shard_of[file_of(i)] == me]
    gone = [i for i in items if shard_of[file_of(i)] != me]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep
