"""A first stage that loads the capture kernel with the project's own loader, in Python.

The pieces are the product's (mkkdumprd/vmtest/guest_python.py: the interpreter, the traced
stdlib and the loader's sources; mkkdumprd/vmtest/first_stage.py: /init steps and their
console markers); this module keeps the names the VM tests import and the test-only
`build_python_first_stage` with its own script.
"""

from __future__ import annotations

from pathlib import Path

from mkkdumprd.vmtest import first_stage as fs
from mkkdumprd.vmtest.first_stage import (
    CRASHING_MARKER,
    DONE_MARKER,
    STEP_BEGIN,
    STEP_END,
    Step,
    init_script,
    parse_steps,
    step,
)
from mkkdumprd.vmtest.guest_python import (
    GUEST_PYTHON,
    LOADER,
    LOADER_ROOT,
    STDLIB,
    TRACER,
    Module,
    arch_data_entry,
    host_binary_many,
    loader_entries,
    python_entries,
    trace_loader_modules,
)

REPO = Path(__file__).resolve().parents[3]

__all__ = ["CRASHING_MARKER", "DONE_MARKER", "GUEST_PYTHON", "LOADER", "LOADER_ROOT", "REPO",
           "STDLIB", "STEP_BEGIN", "STEP_END", "TRACER", "Module", "Step", "arch_data_entry",
           "build_python_first_stage", "host_binary_many", "init_script", "loader_entries",
           "parse_steps", "python_entries", "step", "trace_loader_modules"]


def build_python_first_stage(kernel: Path, capture_image: Path, out: Path,
                             script: str) -> Path:
    """Write the first-stage initramfs (uncompressed, like the harness's own) to `out`."""
    return fs.build_first_stage(kernel, capture_image, out, script)
