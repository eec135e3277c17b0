"""clm — causal language modelling: predict the next token.

What it needs: packed blocks of token ids in which every document ends with EOS (the `pack` stage
guarantees it). Any decoder (`AutoModelForCausalLM`).

What labels it makes: the block itself; the model shifts by one, so position t predicts token
t+1. No position is ignored: a block has no padding.

Document masking (default on): a block holds the end of one document and the starts of others.
With `document_mask`, each token attends only to earlier tokens of its own document (a boolean
(B, 1, T, T) mask, causal and block-diagonal) and positions restart at each document. The EOS
that closes document k opens segment k+1, so the first token of a document is predicted from the
EOS alone, exactly as in evaluation, where each held-out document is scored as [EOS] + text + [EOS].

With `packed_attention` (set by the training loop where the model runs models/attention.py's
packed-document form: GPUs, and long blocks on the CPU) the mask is not built: the batch carries the
documents' boundaries instead (`cu_seq_lens_q`, over the flattened batch), and positions as above.

How it relates to the others: the objective of GPT-style base models; `fim` (later) reorders a
document and then trains with this same loss; `mlm` predicts masked tokens from both sides.

Example:
    block  = [a b </s> c d e </s> f]
    labels = [a b </s> c d e </s> f]      (shifted inside the model)
    segments 0 0 1 1 1 1 2 2, positions 0 1 0 1 2 3 0 1
"""

from __future__ import annotations

import torch

from selfsup.models.chunked_loss import chunked_causal_lm_loss


class CausalLM:
    name = "clm"
    # Set by the training loop where the model qualifies (models/chunked_loss.py): the same loss
    # without full-vocabulary logits; otherwise transformers computes it from the logits.
    chunked_head = False
    # Set by the training loop where the model attends by document boundaries (models/attention.py).
    packed_attention = False

    def __init__(self, eos_id: int, document_mask: bool = True) -> None:
        self.eos_id = eos_id
        self.document_mask = document_mask

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.chunked_head:
            return chunked_causal_lm_loss(model, batch)
        return model(**batch, use_cache=False).loss  # transformers' own loss: mean over labelled positions (no cache:
        # see models/chunked_loss.py chunked_causal_lm_loss)

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        batch = {"input_ids": blocks, "labels": blocks}
        if self.document_mask and self.packed_attention:
            batch["position_ids"] = document_positions(blocks, self.eos_id)
            batch["cu_seq_lens_q"] = packed_document_bounds(blocks, self.eos_id)
        elif self.document_mask:
            mask, positions = document_causal_mask(blocks, self.eos_id)
            batch["attention_mask"] = mask
            batch["position_ids"] = positions
        return batch


def document_causal_mask(blocks: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, T, T) bool mask (True = may attend) and (B, T) positions restarting at each document."""
    T = blocks.shape[1]
    segment = torch.cumsum((blocks == eos_id).long(), dim=1)  # (B, T): the EOS opens the next segment
    positions = document_positions(blocks, eos_id)
    causal = torch.ones(T, T, dtype=torch.bool, device=blocks.device).tril()
    same_doc = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    return (causal & same_doc)[:, None], positions


def document_positions(blocks: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, T) positions restarting at each document (the EOS that closes one opens the next)."""
    B, T = blocks.shape
    is_eos = blocks == eos_id
    arange = torch.arange(T, device=blocks.device).expand(B, T)
    start = torch.cummax(torch.where(is_eos, arange, torch.zeros_like(arange)), dim=1).values
    return arange - start


def packed_document_bounds(blocks: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(documents + 1,) int32: where each document starts in the flattened batch, then B·T.

    The segments are those of `document_causal_mask`: an EOS opens a document, and so does each row's
    start. The count varies from batch to batch: a compiled step recompiles once, with that length
    symbolic, and not again (padding it to a fixed B·T + 1 instead would hand variable-length flash
    attention B·T mostly empty sequences to launch)."""
    opens = blocks == eos_id
    opens[:, 0] = True  # `blocks == eos_id` is a new tensor: the caller's blocks are untouched
    starts = torch.nonzero(opens.reshape(-1)).flatten().to(torch.int32)
    return torch.cat([starts, starts.new_full((1,), blocks.numel())])
