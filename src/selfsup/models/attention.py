"""Attention for short blocks on the CPU: softmax(QKᵀ/√d)·V written out, for `torch.compile` to fuse.

Why not SDPA everywhere: on the CPU, SDPA runs a flash-attention kernel built for long
sequences and wide heads. For the blocks we train on there (256-512 tokens, heads of 32-64
dims, a document mask), the plain product, masked softmax and product again, compiled by
inductor into a few fused loops, is faster: a whole training step of the tiny preset went from
285 to 246 ms (bench/train_throughput.py measures the loop against the HF Trainer, which keeps
SDPA). The scores are materialised, B·H·T² floats per layer, so this is chosen only for short
blocks (`SHORT_BLOCK_TOKENS`), only on the CPU (GPUs have real flash kernels) and only when the
model is compiled (run eagerly, the written-out form is the slower one), and only while the scores
kept for the backward stay small: on a real base (30 layers, 9 heads) SDPA is faster and leaner.

It is registered with transformers' attention and mask interfaces under `SHORT_BLOCK_ATTENTION`
and set on the model for training only: the name is not saved in config.json (export writes
the standard SDPA model), and the results equal SDPA's to rounding (tests/models/test_attention.py).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SHORT_BLOCK_ATTENTION = "selfsup_short_blocks"
SHORT_BLOCK_TOKENS = 512
# Scores kept for the backward in one step (batch · heads · T² · layers) above which SDPA wins: for
# SmolLM2-135M at 8×512 (566M) the written-out form kept 3.2 GB more and ran 12% slower than SDPA
# (668 against 755 tokens/s, 10.2 against 7.0 GB peak RSS, bench/train_throughput.py --real-base);
# the tiny and small presets (17M, 38M) are where it is faster.
SHORT_BLOCK_SCORES = 2**26
# Families whose attention is plain scaled dot-product (no logit soft-capping, sinks or ALiBi): the
# ones selfsup builds (llama, bert) and common base models continued on the CPU.
PLAIN_ATTENTION_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "bert", "roberta"})


def short_block_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, T, D)
    key: torch.Tensor,  # (B, H_kv, S, D)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # bool (True = may attend) or additive float, broadcastable to (B, H, T, S)
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; returns (B, T, H, D) like its SDPA function."""
    groups = query.shape[1] // key.shape[1]  # grouped-query attention: share each key/value head
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)).float() * scaling  # softmax in fp32, as SDPA does
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal  # as transformers' SDPA decides
    if attention_mask is None and is_causal and query.shape[2] > 1:
        t, s = query.shape[2], key.shape[2]
        attention_mask = torch.ones(t, s, dtype=torch.bool, device=query.device).tril(s - t)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    if dropout > 0.0 and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(SHORT_BLOCK_ATTENTION, short_block_attention)
AttentionMaskInterface.register(SHORT_BLOCK_ATTENTION, sdpa_mask)  # the same boolean masks SDPA gets


def use_short_block_attention(model: torch.nn.Module, device: torch.device, seq_len: int, compiled: bool,
                              batch_size: int | None = None) -> bool:
    """Switch a model that runs SDPA to the written-out form where that is faster; True if switched.

    With `batch_size`, also only while the scores it keeps for the backward stay small (`SHORT_BLOCK_SCORES`).
    """
    config = getattr(model, "config", None)
    scores = (batch_size or 0) * getattr(config, "num_attention_heads", 0) * seq_len**2 * getattr(config, "num_hidden_layers", 0)
    if (
        device.type != "cpu"
        or not compiled
        or seq_len > SHORT_BLOCK_TOKENS
        or scores > SHORT_BLOCK_SCORES
        or getattr(config, "_attn_implementation", None) != "sdpa"
        or getattr(config, "model_type", None) not in PLAIN_ATTENTION_FAMILIES
        or not hasattr(model, "set_attn_implementation")
    ):
        return False
    try:
        model.set_attn_implementation(SHORT_BLOCK_ATTENTION)
    except (ValueError, NotImplementedError):  # a model class that cannot take custom attention keeps SDPA
        return False
    return True
