"""Children that get a Ctrl-C the way a terminal gives it.

A background job of a non-interactive shell (dev/test runs half the suite so) starts with
SIGINT ignored, and Python then installs no KeyboardInterrupt handler: a test that sends
SIGINT to a child would see it ignored. Tests about Ctrl-C start their child with SIGINT's
default disposition, as a terminal's foreground job has it.
"""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """A `preexec_fn`: SIGINT back to its default disposition in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
