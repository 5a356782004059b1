"""Running a reader of untrusted bytes under a memory cap, for the fuzz tests.

A case passes when the call returns or raises one of the product's own errors; any other
exception (a traceback for the user) fails it, and so does a Python heap peak above the
cap (tracemalloc sees every bytes/bytearray the reader builds). Hangs are caught by
hypothesis' per-example deadline, set generously in each test: a hang never ends.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

from mkkdumprd.errors import MkkdumprdError

MEM_CAP = 96 << 20


def bounded_call(fn: Callable[..., Any], *args: Any,
                 allowed: tuple[type[BaseException], ...] = (MkkdumprdError,),
                 mem_cap: int = MEM_CAP) -> Any:
    """fn(*args), or None when it raised an allowed error; asserts the memory cap."""
    tracemalloc.start()
    try:
        try:
            return fn(*args)
        except allowed as exc:
            text = str(exc)
            assert "Traceback" not in text
            return None
        finally:
            _, peak = tracemalloc.get_traced_memory()
            assert peak < mem_cap, f"{fn.__name__} peaked at {peak >> 20} MiB"
    finally:
        tracemalloc.stop()
