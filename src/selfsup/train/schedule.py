"""Learning rate as a pure function of (step, planned length): linear warmup, then a decay to a floor.

No scheduler object to save or restore: the step number and the run's planned length (`budget.py`,
saved in every checkpoint) are the whole schedule state. Two shapes:

- `cosine`: from the peak straight down along a half cosine to `peak * min_ratio` at the last step.
- `wsd` (warmup-stable-decay, Hägele et al. 2024, arXiv 2405.18392): the peak held until the last
  `decay_fraction` of the steps, then a (1 - sqrt) cooldown to the floor. It needs the run's end
  only when the cooldown starts, which suits a time budget: the length is planned from measured
  step times while the rate is still flat, and a run that learns its length late loses nothing.

Whatever bounds the run, the rate reaches its floor at the last planned step. While the length
is not known yet (a time budget not yet planned), the rate after warmup stays at the peak.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "wsd")


def decay_start(total: int, warmup: int, kind: str, decay_fraction: float) -> int:
    """The first step whose rate is below the peak: the end of warmup (cosine), or of the stable phase (wsd)."""
    if kind == "wsd":
        return total - max(1, round(decay_fraction * (total - warmup)))
    return warmup


def lr_at(
    step: int, *, peak: float, warmup: int, total: int | None, min_ratio: float,
    kind: str = "cosine", decay_fraction: float = 0.2,
) -> float:
    """The rate of the update that follows `step` completed steps (so step 0 is the first update)."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if total is None or total <= warmup:
        return peak
    floor = peak * min_ratio
    if kind == "wsd":
        start = decay_start(total, warmup, kind, decay_fraction)
        if step < start:
            return peak
        progress = min(1.0, (step - start + 1) / (total - start))  # the last step runs at the floor
        return floor + (peak - floor) * (1.0 - math.sqrt(progress))
    if kind != "cosine":
        raise ValueError(f"unknown schedule {kind!r}; use one of {', '.join(SCHEDULES)}")
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
