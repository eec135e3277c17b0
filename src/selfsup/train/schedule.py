"""Learning rate as a pure function of the step: linear warmup, then cosine decay to a floor.

No scheduler object to save or restore: the step number is the whole schedule state. When the
run length is not known in steps (only `max_minutes`), the rate stays at its peak after warmup,
since a cosine needs an end to aim at.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, warmup: int, total: int | None, min_ratio: float) -> float:
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if total is None or total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = peak * min_ratio
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
