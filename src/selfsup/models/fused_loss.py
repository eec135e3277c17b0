"""Next-token cross-entropy written so that `torch.compile` fuses its backward into one pass.

transformers computes the loss as log_softmax + nll_loss (a gather of each target's
log-probability). The gather's backward is a scatter into a zero tensor the size of the logits:
for a batch of 16×256 tokens over an 8k vocabulary that is a 134 MB fill on every step, then a
scatter, then the softmax backward reading it all again (5% of a tiny model's CPU step for the
fill alone, measured with torch.profiler). Written as

    loss = logsumexp(logits) - sum(where(vocab == target, logits, 0))

every operation is pointwise or a row reduction: the backward, softmax·g - where(vocab == target,
g, 0), is one fused loop and no zero tensor exists. Same value and gradient as transformers'
`ForCausalLMLoss` (shift by one, ignore_index -100, mean over labelled positions), to fp32
rounding (tests/models/test_fused_loss.py). Run eagerly the (N, V) comparison would be
materialised, so the training loop sets it only on compiled models (`use_fused_causal_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.models.lora import unwrap_lora

IGNORE_INDEX = -100


def cross_entropy_pointwise(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                            num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Mean cross-entropy over the targets that are not `ignore_index` (or the sum over
    `num_items_in_batch`, as transformers does when it is given); logits (N, V), targets (N,)."""
    logits = logits.float()  # the softmax in fp32, as transformers upcasts
    vocab = torch.arange(logits.shape[-1], device=logits.device)
    picked = torch.where(vocab == targets[:, None], logits, 0.0).sum(-1)
    losses = torch.logsumexp(logits, dim=-1) - picked
    valid = targets != ignore_index
    total = torch.where(valid, losses, 0.0).sum()
    if num_items_in_batch is not None:
        return total / torch.as_tensor(num_items_in_batch, device=total.device)
    return total / valid.sum().clamp(min=1)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int,
                   num_items_in_batch: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX,
                   shift_labels: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """transformers' `ForCausalLMLoss` signature: position t is scored on token t+1."""
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    return cross_entropy_pointwise(logits.reshape(-1, vocab_size), shift_labels.reshape(-1).to(logits.device),
                                   ignore_index, num_items_in_batch)


def use_fused_causal_loss(model: torch.nn.Module, compiled: bool) -> bool:
    """Give a compiled causal LM this loss (it reads `model.loss_function`); True if set.

    Models that compute their loss some other way (encoders, seq2seq, LoRA wrappers without the
    hook) keep theirs.
    """
    target = unwrap_lora(model)
    if not compiled or not hasattr(type(target), "loss_function") or not type(target).__name__.endswith("ForCausalLM"):
        return False
    target.loss_function = causal_lm_loss
    return True
