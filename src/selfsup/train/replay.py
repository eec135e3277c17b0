"""Replay: general text mixed into continued pretraining to limit forgetting (`[train] replay_*`).

A model trained only on the domain drifts away from everything else it knew. Mixing a small
share of general text back in (a few per cent to ~10%; Ibrahim et al. 2024, "Simple and
Scalable Strategies to Continually Pre-train LLMs") keeps most of it at little cost to the
domain. The pipeline ingests `replay_sources` and packs them with the same tokenizer into
`replay/shards` next to the domain shards (`replay_shards_dir`); here the two are presented as
one block source with TokenShards' interface (`len`, `blocks(rows)`, `seq_len`, `vocab_size`),
so the loop's `DataOrder` shuffles and resumes over it unchanged.

The mix is a pure function of the two shard sets and the fraction: the source has
len(domain) + R rows, R = round(len(domain) · f / (1 − f)), so each epoch's shuffled order holds
exactly R replay blocks among len(domain) domain ones. Row len(domain) + j is replay block j
when the replay set is at least R blocks long taken at evenly spaced places (the whole replay
set is sampled, not its first files), else replay block j mod len(replay) (short replay text is
repeated). No state, so resume stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selfsup.errors import UsageError
from selfsup.pack import TokenShards


def replay_shards_dir(shards_dir: Path) -> Path:
    """Where the replay text packed with the same tokenizer lives: `replay/shards` beside the shards."""
    return Path(shards_dir).parent / "replay" / "shards"


class ReplayMix:
    """Domain blocks followed by replay blocks, as one block source for the training loop."""

    def __init__(self, domain: TokenShards, replay: TokenShards, fraction: float) -> None:
        if not 0 < fraction < 1:
            raise UsageError(f"[train] replay_fraction must be above 0 and below 1, not {fraction}")
        if replay.seq_len != domain.seq_len:
            raise UsageError(
                f"replay shards have blocks of {replay.seq_len} tokens, the domain shards {domain.seq_len}; "
                "pack both with the same [pack] seq_len"
            )
        if len(replay) == 0:
            raise UsageError("the replay text packs into no training blocks; add more text to [train] replay_sources")
        self.domain, self.replay, self.fraction = domain, replay, fraction
        self.seq_len = domain.seq_len
        self.vocab_size = max(domain.vocab_size, replay.vocab_size)
        self.n_domain = len(domain)
        self.n_replay = max(1, round(self.n_domain * fraction / (1 - fraction)))

    def __len__(self) -> int:
        return self.n_domain + self.n_replay

    @property
    def tokens(self) -> int:
        return len(self) * self.seq_len

    def replay_block(self, j: np.ndarray) -> np.ndarray:
        """Replay block index for replay row j (0 ≤ j < n_replay)."""
        available = len(self.replay)
        if available >= self.n_replay:
            return j * available // self.n_replay  # evenly spaced over the whole replay set
        return j % available

    def is_replay(self, indices: Sequence[int]) -> np.ndarray:
        return np.asarray(indices, dtype=np.int64) >= self.n_domain

    def blocks(self, indices: Sequence[int]) -> np.ndarray:
        """Rows at `indices` as a fresh (B, seq_len) int64 array, domain or replay as each index says."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), self.seq_len), dtype=np.int64)
        replay = idx >= self.n_domain
        if (~replay).any():
            out[~replay] = self.domain.blocks(idx[~replay])
        if replay.any():
            out[replay] = self.replay.blocks(self.replay_block(idx[replay] - self.n_domain))
        return out


def training_blocks(shards_dir: Path, cfg) -> TokenShards | ReplayMix:
    """The loop's training data: the domain shards, mixed with replay when [train] asks for it."""
    domain = TokenShards(shards_dir, "train")
    if not cfg.replay_sources or cfg.replay_fraction <= 0:
        return domain
    replay_dir = replay_shards_dir(shards_dir)
    try:
        replay = TokenShards(replay_dir, "train")
    except UsageError:
        raise UsageError(
            f"[train] replay_sources is set but {replay_dir} holds no packed replay text; `selfsup run` packs it "
            f"there (or run `selfsup ingest` and `selfsup pack` on the replay folders with --out {replay_dir})"
        ) from None
    return ReplayMix(domain, replay, cfg.replay_fraction)
