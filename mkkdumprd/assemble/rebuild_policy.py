"""The rebuild policy: whether the image at req.output is kept, built or refused, and why.

One function, ensure_image(), decides it for `mkkdumprd build` and for the service verbs
(start, restart, rebuild); its docstring is the policy. docs/ARCHITECTURE.md has it as a
table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mkkdumprd.errors import UsageError

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest, BuildResult
    from mkkdumprd.assemble.cached import BuildCache

FORCE_HINT = "use --force to overwrite it"


class Overwrite(enum.Enum):
    NEVER = "never"
    IF_STALE = "if_stale"
    ALWAYS = "always"


class Did(enum.Enum):
    CREATED = "created"     # no file was there
    REBUILT = "rebuilt"     # the image was stale (or force_rebuild)
    REPLACED = "replaced"   # rebuilt on request (Overwrite.ALWAYS), whatever was there
    KEPT = "kept"           # up to date, or force_no_rebuild

    @property
    def built(self) -> bool:
        return self is not Did.KEPT


@dataclass(frozen=True)
class Ensured:
    """What ensure_image() did with the output file, why, and the build if one ran."""

    did: Did
    reasons: tuple[str, ...]            # why it was built, or a note on why it was kept
    result: BuildResult | None = None   # the build, when there was one

    @property
    def built(self) -> bool:
        return self.did.built


def ensure_image(req: BuildRequest, overwrite: Overwrite = Overwrite.NEVER, *,
                 before_build: Callable[[Ensured], None] | None = None,
                 force_hint: str = FORCE_HINT) -> Ensured:
    """Make req.output hold a current image as far as `overwrite` allows; say what was done.

    A missing file is always built (CREATED; the reason is "rebuild requested" under
    ALWAYS, else that it does not exist). An existing file:

    NEVER     an error "already exists; <force_hint>" (the Python API default).
    IF_STALE  (`build`, `start`, `restart`) kdump.conf's force_no_rebuild keeps it
              unchecked (KEPT, with a note) and force_rebuild rebuilds it (REBUILT), in
              kdumpctl's order; otherwise assemble/freshness.py compares its manifest with
              the host by content and it is rebuilt only when an input changed (REBUILT,
              with the reasons) or kept (KEPT). A file that is not an intact mkkdumprd
              image is never replaced: an error "... is not an mkkdumprd image;
              <force_hint>".
    ALWAYS    (`build --force`, `rebuild`) rebuilt and replaced whatever it holds
              (REPLACED, "rebuild requested").

    `before_build` gets the decision after it is taken and before the (slow) build, so a
    caller can announce it. The write is atomic (image/writer.py): a failed build leaves
    the old file in place.
    """
    from mkkdumprd.assemble.cached import BuildCache

    if req.output is None:
        raise ValueError("ensure_image needs req.output")
    with BuildCache() as cache:
        decision = _decide(req, overwrite, cache, force_hint)
    if not decision.built:
        return decision
    if before_build is not None:
        before_build(decision)
    # The build opens its own cache, stored while the image is compressed and written.
    # The builder is imported only now: a kept image does not pay for it.
    from mkkdumprd.assemble.builder import build_image

    return replace(decision, result=build_image(req))


def _decide(req: BuildRequest, overwrite: Overwrite, cache: BuildCache,
            force_hint: str) -> Ensured:
    out = req.output
    assert out is not None
    if overwrite is Overwrite.ALWAYS:
        return Ensured(Did.REPLACED if out.exists() else Did.CREATED, ("rebuild requested",))
    if not out.exists():
        return Ensured(Did.CREATED, (f"{out} does not exist",))
    if overwrite is Overwrite.NEVER:
        raise UsageError(f"{out} already exists; {force_hint}")
    config = req.config
    if config.force_no_rebuild:
        return Ensured(Did.KEPT, (f"force_no_rebuild is set in {config.source}: not checked",))
    if config.force_rebuild:
        return Ensured(Did.REBUILT, (f"force_rebuild is set in {config.source}",))
    from mkkdumprd.assemble.freshness import check_fresh  # (not needed by the cases above)

    fresh = check_fresh(req, out, cache)
    if fresh.foreign:
        raise UsageError(f"{out} already exists and is not an mkkdumprd image; {force_hint}")
    if fresh.up_to_date:
        return Ensured(Did.KEPT, fresh.reasons)
    return Ensured(Did.REBUILT, fresh.reasons or ("the image is out of date",))
