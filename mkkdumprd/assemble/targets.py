"""Several dump targets (dump_policy fallback or all), each planned on its own.

Every target is resolved as a single-target build would resolve it (host-only discovery,
its own capture network). A target that cannot be resolved is an error naming its line;
under `fallback`, when another target resolves, it is a warning instead and the target is
kept as written (resolved as for another machine), so the image still tries it at dump
time. One image holds one ssh key and one known_hosts file: at most one ssh target.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mkkdumprd.config.model import DumpPolicy, KdumpConfig, Target, TargetKind
from mkkdumprd.errors import MkkdumprdError, OperationError, UsageError

if TYPE_CHECKING:
    from mkkdumprd.assemble.builder import BuildRequest, PlannedTarget


def named(target: Target, message: str) -> str:
    """`message` about `target`, led by the line that wrote it (or by what it is)."""
    if target.where is not None:
        where = str(target.where)
        return message if message.startswith(where) else f"{where}: {message}"
    return f"--target {target.describe()}: {message}"


def plan_targets(req: BuildRequest, warnings: list[str]) -> list[PlannedTarget]:
    """The targets in dump order; warnings (resolution's, and fallback's) go to `warnings`."""
    from mkkdumprd.assemble.builder import PlannedTarget, capture_network
    from mkkdumprd.assemble.target import resolve_target

    config = req.config
    ssh = [t for t in config.targets if t.kind is TargetKind.SSH]
    if len(ssh) > 1:
        raise UsageError(named(ssh[1], "a second ssh target: the image holds one ssh key and "
                                       "one known_hosts file; keep one ssh target"))
    planned: list[PlannedTarget] = []
    failed: list[str] = []
    resolved_here = 0
    for t in config.targets:
        one = replace(config, target=t, more_targets=())
        try:
            resolved, found = resolve_target(one, req.machine, req.hostonly)
            network = capture_network(req, resolved)
        except MkkdumprdError as exc:
            message = named(t, str(exc))
            if config.dump_policy is not DumpPolicy.FALLBACK:
                if isinstance(exc, OperationError):
                    raise OperationError(message) from None
                raise UsageError(message) from None
            kept = _as_written(req, one) if req.hostonly else None
            if kept is None:
                failed.append(f"{message}; the image cannot try this target")
            else:
                failed.append(f"{message}; dump_policy fallback: the image still tries it "
                              "at dump time, as written")
                planned.append(kept)
            continue
        resolved_here += 1
        warnings.extend(found)
        planned.append(PlannedTarget(resolved, network, True))
    if not resolved_here:
        raise UsageError(failed[0].split("; the image", 1)[0] + "; and no other dump target "
                         "could be resolved either")
    warnings.extend(failed)
    return planned


def _as_written(req: BuildRequest, one: KdumpConfig) -> PlannedTarget | None:
    """The target taken as given (as --no-hostonly takes it), or None if even that fails."""
    from mkkdumprd.assemble.builder import PlannedTarget, capture_network
    from mkkdumprd.assemble.target import resolve_target
    nohost = replace(req, hostonly=False)
    try:
        resolved, _ = resolve_target(one, req.machine, False)
        return PlannedTarget(resolved, capture_network(nohost, resolved), False)
    except MkkdumprdError:
        return None
