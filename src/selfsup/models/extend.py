"""Grow a base model's vocabulary for an extended tokenizer (`[tokenizer] extend`, tokens/extend.py).

A new token's embedding row starts as the mean of the rows of the pieces the base used to spell
it, and so does its output-head row when the head is a separate matrix (a tied head is the same
matrix, set once). The new token then starts out meaning roughly what its pieces meant together,
instead of random noise the model must first unlearn (Fast Vocabulary Transfer, Gee et al. 2022,
initialises new tokens this way). Rows of the old vocabulary are not touched, so the logits of the
old tokens on text without new tokens are exactly what they were.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from selfsup.errors import UsageError


@torch.no_grad()
def extend_embeddings(model: PreTrainedModel, terms: list[dict[str, Any]], vocab_size: int | None = None) -> PreTrainedModel:
    """Make room for every term's id (and `vocab_size` ids) and set each new row to its pieces' mean.

    `terms` are extension.json's records: {"token", "id", "pieces": [old ids]}. Returns the model
    (resized in place).
    """
    embeddings = model.get_input_embeddings()
    old_rows = embeddings.weight.shape[0]
    needed = max([vocab_size or 0, old_rows, *(t["id"] + 1 for t in terms)])
    for t in terms:
        if max(t["pieces"]) >= old_rows:
            raise UsageError(
                f"extension term {t['token']!r} has piece ids beyond the base model's {old_rows} embeddings; "
                "the tokenizer was extended from another model's tokenizer; run the tokenizer stage again"
            )
    if needed > old_rows:
        model.resize_token_embeddings(needed, mean_resizing=False)
    embeddings = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embeddings.weight
    for t in terms:
        pieces = torch.tensor(t["pieces"], dtype=torch.long)
        embeddings.weight[t["id"]] = embeddings.weight[pieces].mean(0)
        if head is not None and not tied:
            head.weight[t["id"]] = head.weight[pieces].mean(0)
            if getattr(head, "bias", None) is not None:
                head.bias[t["id"]] = head.bias[pieces].mean(0)
    return model
