"""Guards on each step's numbers: skip non-finite updates, stop on a streak of them, warn on loss spikes.

A NaN or infinite loss or gradient norm must not reach the weights: one bad batch (or one overflow)
would poison every later step and every checkpoint after it. So the update is skipped (no
optimizer step; the step still counts and its data is consumed, so the run stays a pure function
of the recipe), counted and logged. A streak of them means the run itself is broken (learning rate
too high, corrupt data), so after `limit` in a row the run stops, keeping the last good checkpoint.

The counts are part of the checkpoint (`state_dict`), so a resumed run stops exactly where an
uninterrupted one would. The spike monitor only warns; its window is refilled from metrics.jsonl on
resume, so it forgets nothing either.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class NonFiniteGuard:
    """Decides, per step, whether the update may be applied; counts the ones that were not."""

    limit: int
    skipped_total: int = 0
    in_a_row: int = 0

    def check(self, loss: float, grad_norm: float) -> bool:
        """True if the step may update the weights."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.in_a_row = 0
            return True
        self.skipped_total += 1
        self.in_a_row += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.in_a_row >= self.limit

    def state_dict(self) -> dict[str, int]:
        return {"skipped_nonfinite": self.skipped_total, "nonfinite_in_a_row": self.in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_total = int(state.get("skipped_nonfinite", 0))
        self.in_a_row = int(state.get("nonfinite_in_a_row", 0))


@dataclass(slots=True)
class LossSpikeMonitor:
    """Flags a loss above mean + sigmas * std of the last `window` finite losses.

    Needs at least `min_points` losses before it judges, so the steep early descent (where the
    spread is large and the mean lags behind) does not cry wolf. `sigmas=None` turns it off.
    """

    window: int = 50
    sigmas: float | None = 5.0
    min_points: int = 10
    _recent: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._recent = deque(maxlen=self.window)

    def observe(self, loss: float) -> tuple[float, float] | None:
        """Record a loss; return (mean, std) of the window before it if the loss is a spike."""
        if not math.isfinite(loss):
            return None
        spike = None
        if self.sigmas is not None and len(self._recent) >= self.min_points:
            n = len(self._recent)
            mean = sum(self._recent) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in self._recent) / n)
            if loss > mean + self.sigmas * max(std, 1e-6):
                spike = (mean, std)
        self._recent.append(loss)
        return spike

    def __len__(self) -> int:
        return len(self._recent)

    def refill(self, losses: Iterable[float]) -> None:
        """Reload the window (on resume) from the losses already logged."""
        for loss in losses:
            if loss is not None and math.isfinite(loss):
                self._recent.append(loss)
