"""Next-token loss through the output head, chunk by chunk: full-vocabulary logits never exist at once.

With a real base the vocabulary is large (SmolLM2: 49,152; Llama 3: 128k). transformers computes
the logits of the whole batch (8×512 tokens × 49,152 = 201M values: 805 MB in fp32, plus a bf16
copy under autocast), then their log-softmax, then in the backward a gradient of the same size:
gigabytes for a 135M model, more than its weights, optimizer state and activations together.

Here the head and the cross-entropy run together over chunks of rows (as Liger-Kernel's fused
linear cross-entropy does): for each chunk the logits are made, their log-sum-exp taken, and the
gradient of the mean loss with respect to them (softmax − one-hot, over the labelled count) is
turned at once into the gradients of the hidden states and of the head's weight. Only those two
are kept for the backward, which merely scales them by the incoming gradient. Peak memory of the
loss drops from O(N·V) to O(chunk·V); the matmuls are the same three as before (logits, grad of
hidden, grad of weight), in the autocast dtype as transformers runs them, with the softmax in
fp32 as transformers upcasts. Same value and gradients as transformers' loss to rounding
(tests/models/test_chunked_loss.py).

Used for decoders of plain families (no logit soft-capping or scaling) in one process; under
DDP / FSDP the wrapper's forward must run, and the model's own loss is kept.
"""

from __future__ import annotations

import torch

from selfsup.models.lora import unwrap_lora

IGNORE_INDEX = -100
CHUNK_ELEMENTS = 2**25  # logits per chunk (128 MB in fp32): small against the model, large enough for fast matmuls
# Causal LM families whose logits are exactly lm_head(hidden): no soft-capping, scaling or bias.
PLAIN_HEAD_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "gemma3_text"})


class _LinearCrossEntropy(torch.autograd.Function):
    """mean over labelled rows of CE(hidden @ weightᵀ, targets); gradients computed in the forward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, compute_dtype: torch.dtype):
        n_rows, vocab = hidden.shape[0], weight.shape[0]
        valid_all = targets != IGNORE_INDEX
        n_valid = valid_all.sum().clamp(min=1).to(torch.float32)
        w = weight.to(compute_dtype)  # (V, C)
        chunk = max(1, CHUNK_ELEMENTS // vocab)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, n_rows, chunk):
            h = hidden[start : start + chunk].to(compute_dtype)  # (n, C)
            t = targets[start : start + chunk]
            valid = valid_all[start : start + chunk]
            safe_t = torch.where(valid, t, 0)
            logits = (h @ w.T).float()  # (n, V): the softmax in fp32
            lse = torch.logsumexp(logits, dim=-1)  # (n,)
            picked = logits.gather(1, safe_t[:, None]).squeeze(1)
            total += torch.where(valid, lse - picked, 0.0).sum()
            grad = logits.sub_(lse[:, None]).exp_()  # softmax, in the logits' memory
            grad.scatter_add_(1, safe_t[:, None], torch.full_like(picked[:, None], -1.0))
            grad.mul_((valid.to(torch.float32) / n_valid)[:, None])
            grad = grad.to(compute_dtype)
            grad_hidden[start : start + chunk] = (grad @ w).to(hidden.dtype)
            grad_weight += grad.T @ h  # (V, C): a product in the compute dtype, summed in fp32
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total / n_valid

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output.to(grad_hidden.dtype), grad_weight * grad_output.to(grad_weight.dtype), None, None


@torch.compiler.disable  # a Python loop over chunks: eager inside a compiled step (one graph break)
def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets` (-100 = ignored); hidden (N, C), weight (V, C)."""
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
    with torch.autocast(device_type, enabled=False):
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            return _LinearCrossEntropy.apply(hidden, weight, targets, dtype)
        return _loss_only(hidden, weight, targets, dtype)  # validation: no gradients to compute


def _loss_only(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return _position_nll(hidden, weight, targets, dtype).sum() / (targets != IGNORE_INDEX).sum().clamp(min=1)


def _position_nll(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N,) −ln softmax(hidden @ weightᵀ)[target] per row (0 where ignored), chunk by chunk, without gradients."""
    valid_all = targets != IGNORE_INDEX
    w = weight.to(dtype)
    chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    out = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk):
        logits = (hidden[start : start + chunk].to(dtype) @ w.T).float()
        valid = valid_all[start : start + chunk]
        picked = logits.gather(1, torch.where(valid, targets[start : start + chunk], 0)[:, None]).squeeze(1)
        out[start : start + chunk] = torch.where(valid, torch.logsumexp(logits, dim=-1) - picked, 0.0)
    return out


@torch.no_grad()
def target_nll(model: torch.nn.Module, inputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """(B, T) −ln p(targets[b, t] | inputs up to t), 0 where targets = -100 (targets already shifted).

    Held-out scoring at a 49k vocabulary made a (B, T, V) fp32 copy of the logits and their
    log-softmax: 1.6 GB at 8×512, the peak of a whole SmolLM2 training run when the trade-off
    probe ran after the last step. Where the head qualifies it goes chunk by chunk instead.
    `inputs` are the model's keyword inputs (input_ids, attention_mask, position_ids).
    """
    if not supports_chunked_head(model):
        logits = model(**inputs).logits.float()
        return torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    target = unwrap_lora(model)
    hidden = target.model(**inputs).last_hidden_state
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
    with torch.autocast(device_type, enabled=False):
        nll = _position_nll(hidden.reshape(-1, hidden.shape[-1]), target.get_output_embeddings().weight,
                            targets.reshape(-1), dtype)
    return nll.reshape(targets.shape)


def supports_chunked_head(model: torch.nn.Module) -> bool:
    """A causal LM whose logits are exactly `lm_head(backbone(...))` (checked by family and head)."""
    target = unwrap_lora(model)
    config = getattr(target, "config", None)
    head = target.get_output_embeddings() if hasattr(target, "get_output_embeddings") else None
    return (
        type(target).__name__.endswith("ForCausalLM")
        and getattr(config, "model_type", None) in PLAIN_HEAD_FAMILIES
        and isinstance(head, torch.nn.Linear)
        and head.bias is None
        and hasattr(target, "model")
        and not getattr(config, "final_logit_softcapping", None)
        and getattr(config, "logit_scale", None) in (None, 1.0)
    )


def chunked_causal_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """transformers' causal-LM loss (position t scored on token t+1, -100 ignored, mean over labelled
    positions) without the logits: the backbone's hidden states go through the chunked head loss."""
    target = unwrap_lora(model)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    # No key/value cache in training: it does nothing for a loss, and a compiled step whose attention runs
    # eagerly (the packed form) would recompile per layer on the cache's state, then give up compiling.
    hidden = target.model(**inputs, use_cache=False).last_hidden_state  # (B, T, C); LoRA layers inside still apply
    labels = batch["labels"]
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])  # (B·(T-1), C)
    targets = labels[:, 1:].reshape(-1).to(hidden.device)
    return linear_cross_entropy(hidden, target.get_output_embeddings().weight, targets)
