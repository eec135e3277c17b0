"""Self-supervised objectives: each turns a batch of packed token blocks into model inputs and labels.

One file per objective, each with the same docstring sections (what it needs, what labels it
makes, how it relates to the others, an example). All randomness comes from the `generator`
passed in, which the train loop seeds from (seed, step, micro-batch): the same step always sees
the same masks, so resuming needs no RNG bookkeeping for the data.
"""

from __future__ import annotations

from typing import Protocol

import torch

from selfsup.config import ObjectiveConfig
from selfsup.objectives.clm import CausalLM
from selfsup.objectives.mlm import MaskedLM


class Objective(Protocol):
    name: str

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, T) token ids → the tensors `compute_loss` needs (for HF models: forward kwargs + labels)."""
        ...

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of `model` on a batch made by `make_batch`."""
        ...


def get_objective(cfg: ObjectiveConfig, special_ids: dict[str, int | None], vocab_size: int) -> Objective:
    if cfg.name == "clm":
        return CausalLM(eos_id=special_ids["eos"], document_mask=cfg.document_mask)
    if cfg.name == "mlm":
        return MaskedLM(
            special_ids=special_ids,
            vocab_size=vocab_size,
            mask_rate=cfg.mask_rate,
            mask_replace=cfg.mask_replace,
            random_replace=cfg.random_replace,
        )
    raise ValueError(f"unknown objective {cfg.name!r}")


__all__ = ["CausalLM", "MaskedLM", "Objective", "get_objective"]
