"""`--measure-crashkernel`: the smallest reservation with which the image still dumps.

Every probe is a whole proof (run.py) with `crashkernel=XM`; the smallest passing X is
found by bisection in `step` MiB steps between `low` and `high`, assuming more memory never
hurts. The probe at or below the recommendation is tried first (the answer is usually
close), then its neighbours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from mkkdumprd.host import Host
from mkkdumprd.loader import status
from mkkdumprd.vmtest.report import Report
from mkkdumprd.vmtest.run import Proof, prove


def minimum(run: Callable[[int], bool], lo: int, hi: int, step: int,
            guess: int | None) -> int | None:
    """Smallest value in lo..hi (multiples of step) for which run() succeeds, or None."""
    bad, good = lo - step, hi + step       # virtual: bad fails, good is unproven
    order: list[int] = []
    if guess is not None and lo <= guess <= hi:
        order = [guess]
    while good - bad > step:
        mid = order.pop(0) if order else bad + (good - bad) // step // 2 * step
        if run(mid):
            good = mid
            if mid == guess and mid - step > bad:
                order = [mid - step]       # the neighbour below settles it when it fails
        else:
            bad = mid
            if mid == guess and mid + step < good:
                order = [mid + step]
    return good if good <= hi else None


def live_reservation_mb(host: Host | None = None) -> int | None:
    """This machine's crashkernel= reservation in MiB (None: none or no kdump support)."""
    size = status.reserved_bytes(host or Host.this_machine())
    return size >> 20 if size else None


def grid_guess(low: int, high: int, step: int, recommended_mb: int) -> int:
    """The probe value (low + k * step) nearest below the recommendation."""
    return min(high, low + max(0, recommended_mb - low) // step * step)


def measure(proof: Proof, low: int, high: int, step: int, recommended_mb: int,
            echo: Callable[[str], None],
            known: Mapping[int, Report] | None = None) -> dict[str, Any]:
    """Bisect; every probe's outcome is echoed and recorded. `known`: proofs already run
    (the command's own, at the recommended size), reused instead of booting again."""
    probes: list[dict[str, Any]] = []

    def run(mb: int) -> bool:
        work = proof.workdir / f"crashkernel-{mb}M"
        r = (known or {}).get(mb) or prove(dataclasses.replace(
            proof, crashkernel=f"{mb}M", workdir=work, log=None))
        # A probe keeps its console log and report; its disks and first stage go.
        for big in (*work.glob("*.img"), *work.glob("*.img.sha256"), work / "vmcore"):
            big.unlink(missing_ok=True)
        probes.append({"crashkernel_mb": mb, "verdict": r.verdict,
                       "failed_step": r.failed_step, "seconds": round(r.seconds, 1),
                       "console_log": r.console_log})
        echo(f"  crashkernel={mb}M: {r.verdict}"
             f"{'' if r.passed else f' ({r.failed_step})'} in {r.seconds:.0f} s")
        return r.passed

    found = minimum(run, low, high, step, grid_guess(low, high, step, recommended_mb))
    return {"minimum_mb": found, "live_mb": live_reservation_mb(),
            "recommended": f"{recommended_mb}M", "low_mb": low, "high_mb": high,
            "step_mb": step, "probes": probes}
