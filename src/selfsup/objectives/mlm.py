"""mlm — masked language modelling (BERT): hide some tokens, predict them from both sides.

What it needs: packed blocks of token ids and a tokenizer with a mask token. Any encoder with a
masked-LM head (`AutoModelForMaskedLM`).

What labels it makes: a share `mask_rate` (default 15%) of the non-special tokens is selected;
of those, `mask_replace` (80%) become the mask token, `random_replace` (10%) a random ordinary
token, and the rest (10%) stay as they are. Labels hold the original token at selected
positions and -100 (ignored) everywhere else. Special tokens (EOS between documents, padding,
BOS, the mask token itself) are never selected, and random replacements are never special.

How it relates to the others: the objective of BERT/RoBERTa; sees context on both sides, so it
suits encoders for classification and retrieval, not generation. `clm` predicts every token
from the left only.

Example (mask_rate=0.15):
    block  = [the cat sat </s> on the mat]
    inputs = [the <mask> sat </s> on the mat]
    labels = [-100 cat -100 -100 -100 -100 -100]
"""

from __future__ import annotations

import torch

IGNORE = -100


class MaskedLM:
    name = "mlm"

    def __init__(
        self,
        special_ids: dict[str, int | None],
        vocab_size: int,
        mask_rate: float = 0.15,
        mask_replace: float = 0.8,
        random_replace: float = 0.1,
    ) -> None:
        if special_ids.get("mask") is None:
            raise ValueError("mlm needs a tokenizer with a mask token")
        self.mask_id = int(special_ids["mask"])
        self.special = sorted({int(i) for i in special_ids.values() if i is not None})
        self.mask_rate = mask_rate
        self.mask_replace = mask_replace
        self.random_replace = random_replace
        ordinary = torch.ones(vocab_size, dtype=torch.bool)
        ordinary[self.special] = False
        self.ordinary_ids = torch.nonzero(ordinary).flatten()  # random replacements come from here

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss  # transformers' own loss: mean over labelled positions

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        inputs, labels = self.mask(blocks, generator)
        return {"input_ids": inputs, "labels": labels}

    def mask(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids → (inputs, labels), drawing every random number from `generator`."""
        device = blocks.device
        special = torch.isin(blocks, torch.tensor(self.special, device=device))
        draw = torch.rand(blocks.shape, generator=generator, device=device)
        selected = (draw < self.mask_rate) & ~special
        labels = torch.where(selected, blocks, torch.full_like(blocks, IGNORE))

        how = torch.rand(blocks.shape, generator=generator, device=device)
        to_mask = selected & (how < self.mask_replace)
        to_random = selected & (how >= self.mask_replace) & (how < self.mask_replace + self.random_replace)
        pick = torch.randint(len(self.ordinary_ids), blocks.shape, generator=generator, device=device)
        random_tokens = self.ordinary_ids.to(device)[pick]

        inputs = torch.where(to_mask, torch.full_like(blocks, self.mask_id), blocks)
        inputs = torch.where(to_random, random_tokens, inputs)
        return inputs, labels
