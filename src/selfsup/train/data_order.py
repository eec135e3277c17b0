"""The data position as explicit state: which blocks each optimizer step trains on.

The order is a pure function of (seed, epoch, cursor) over immutable packed shards: epoch e
visits the blocks in the permutation drawn from `numpy.random.default_rng([seed, e])`, and the
cursor counts blocks already consumed in that epoch. It advances only when an optimizer step
commits, so a checkpoint's three integers say exactly where to continue: resuming costs nothing
however far the run got, and never skips or repeats a batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n_blocks: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_blocks)


@dataclass(slots=True)
class DataOrder:
    seed: int
    n_blocks: int
    epoch: int = 0
    cursor: int = 0

    def peek(self, count: int) -> tuple[np.ndarray, int, int]:
        """The next `count` block indices and the (epoch, cursor) after them; crosses epochs as needed."""
        out = []
        epoch, cursor = self.epoch, self.cursor
        while count > 0:
            perm = epoch_permutation(self.seed, epoch, self.n_blocks)
            take = min(count, self.n_blocks - cursor)
            out.append(perm[cursor : cursor + take])
            count -= take
            cursor += take
            if cursor == self.n_blocks:
                epoch, cursor = epoch + 1, 0
        return np.concatenate(out), epoch, cursor

    def commit(self, epoch: int, cursor: int) -> None:
        """Advance to a position returned by `peek`, once the step that used those blocks is applied."""
        self.epoch, self.cursor = epoch, cursor

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, int]) -> DataOrder:
        return cls(**{k: int(state[k]) for k in ("seed", "n_blocks", "epoch", "cursor")})
