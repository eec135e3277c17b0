"""mix — several decoder objectives in one run: `[objective] mix = {clm = 0.5, span = 0.5}`.

What it needs: objectives that train one causal decoder with one loss (clm, fim, and span on a
decoder base: each rewrites the block its own way, then the clm loss scores it), and the
per-micro-batch generator the train loop seeds from (seed, step, micro-batch).

What labels it makes: each micro-batch is made whole by one of the objectives, drawn with the
shares given (normalised to sum to 1) from the first number of that micro-batch's generator. The
draw depends only on (seed, step, micro-batch), so a resumed run, or a run on another number of
processes, trains on the same objective at the same step; the objectives' own masks then come
from the same generator, as when they run alone.

Why per micro-batch and not per document: UL2R (Tay et al. 2022) and FIM (Bavarian et al. 2022)
mix at the example level; a micro-batch of whole blocks is the unit our loop already seeds, and
at 4 blocks a step the shares are met within a few percent after a hundred steps. (fim also
mixes within itself: `fim_rate` of its documents are reordered, the rest stay plain text.)

Example: mix = {clm = 0.75, span = 0.25}: about one micro-batch in four is span-corrupted, the
rest plain next-token prediction; `counts` says how many of each a run's micro-batches drew.
"""

from __future__ import annotations

import torch

from selfsup.objectives.clm import CausalLM


class MixedObjective:
    name = "mix"

    def __init__(self, parts: dict[str, object], shares: dict[str, float], *, eos_id: int, document_mask: bool = True) -> None:
        if set(parts) != set(shares) or not parts:
            raise ValueError(f"mix: every objective needs a share, got {sorted(parts)} and {sorted(shares)}")
        self.names = sorted(parts)  # a fixed order: the draw must not depend on how the recipe listed them
        total = sum(shares[n] for n in self.names)
        bounds, running = [], 0.0
        for n in self.names:
            running += shares[n] / total
            bounds.append(running)
        self.bounds = bounds
        self.parts = parts
        # One loss for all: each part's batch is a clm batch (labels masked where a part says so), so
        # the chunked head and the compiled loss see one function whatever the draw.
        self.clm = CausalLM(eos_id=eos_id, document_mask=document_mask)

    def draw(self, generator: torch.Generator | None) -> str:
        u = float(torch.rand(1, generator=generator))
        return next((n for n, b in zip(self.names, self.bounds) if u < b), self.names[-1])

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.parts[self.draw(generator)].make_batch(blocks, generator)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.clm.compute_loss(model, batch)

    def counts(self, generators) -> dict[str, int]:
        """How many of the micro-batches seeded by `generators` each objective makes (the draw is all
        that decides it, so a run's counts follow from its seeds alone, whatever the processes did)."""
        out = {n: 0 for n in self.names}
        for g in generators:
            out[self.draw(g)] += 1
        return out
