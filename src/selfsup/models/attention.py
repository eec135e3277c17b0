"""Attention for training: short blocks written out on the CPU, and packed documents without a T×T mask.

Two forms beside transformers' SDPA, each chosen by `choose_attention` where it measures better, and
each set on the model for training only (the name is not saved in config.json: export writes the
standard SDPA model), with results equal to SDPA's to rounding (tests/models/test_attention.py).

**Short blocks** (`SHORT_BLOCK_ATTENTION`): softmax(QKᵀ/√d)·V written out, for `torch.compile` to fuse.

Why not SDPA everywhere: on the CPU, SDPA runs a flash-attention kernel built for long
sequences and wide heads. For the blocks we train on there (256-512 tokens, heads of 32-64
dims, a document mask), the plain product, masked softmax and product again, compiled by
inductor into a few fused loops, is faster: a whole training step of the tiny preset went from
285 to 246 ms (bench/train_throughput.py measures the loop against the HF Trainer, which keeps
SDPA). The scores are materialised, B·H·T² floats per layer, so this is chosen only for short
blocks (`SHORT_BLOCK_TOKENS`), only on the CPU (GPUs have real flash kernels) and only when the
model is compiled (run eagerly, the written-out form is the slower one), and only while the scores
kept for the backward stay small: on a real base (30 layers, 9 heads) SDPA is faster and leaner.

**Packed documents** (`PACKED_DOCUMENT_ATTENTION`): document-masked causal attention from the
documents' boundaries alone (`cu_seq_lens_q`, transformers' keyword for packed sequences, made by
`objectives/clm.py packed_document_bounds`), so no (B, 1, T, T) mask is ever built: at T = 8,192 that
mask is 64 MB a row, and on a GPU any mask keeps SDPA off its flash kernel. On a GPU each document is
one sequence of torch's variable-length flash attention (`varlen_attn`, causal window); on the CPU,
where torch offers neither `varlen_attn` nor a FlexAttention backward (torch 2.13 refuses it), each
document is one causal SDPA call, whose CPU flash kernel never materialises the scores either. The
CPU form is the reference the GPU form is tested against, and both equal masked SDPA.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
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
PLAIN_DECODER_FAMILIES = PLAIN_ATTENTION_FAMILIES - {"bert", "roberta"}

PACKED_DOCUMENT_ATTENTION = "selfsup_packed_documents"
# Block length from which the CPU trains packed documents rather than SDPA with the dense mask:
# bench/long_blocks.py, a 4-layer decoder at 8,192 tokens a step (see docs/performance.md).
PACKED_MIN_TOKENS_CPU = 2048


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


def _varlen_attn():
    """torch's variable-length flash attention and the keywords this torch's version takes, or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # torch < 2.10: SDPA document by document instead
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


VARLEN_ATTN = _varlen_attn()  # looked up once: the compiled step must not trace the lookup


def packed_document_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, T, D)
    key: torch.Tensor,  # (B, H_kv, T, D)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,  # (documents + 1,) int32: their starts in the flattened batch, then B·T
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; returns (B, T, H, D). Without `cu_seq_lens_q` (a model
    called outside training, e.g. held-out scoring with a padding mask) it is plain SDPA."""
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    B, H, T, D = query.shape
    # (B, H, T, D) → (B·T, H, D): the layout of variable-length attention, one row of tokens after another
    q, k, v = (x.transpose(1, 2).reshape(B * T, x.shape[1], D) for x in (query, key, value))
    dropout = dropout if module.training else 0.0
    flash_ready = query.device.type == "cuda" and query.dtype in (torch.bfloat16, torch.float16) and dropout == 0.0
    if flash_ready and VARLEN_ATTN is not None:  # a custom op: it stays inside the compiled graph
        varlen, options = VARLEN_ATTN
        if k.shape[1] != H and "enable_gqa" not in options:
            k, v = (x.repeat_interleave(H // k.shape[1], dim=1) for x in (k, v))
        causal = {"is_causal": True} if "is_causal" in options else {"window_size": (-1, 0)}  # torch 2.10 / 2.11+
        gqa = {"enable_gqa": True} if k.shape[1] != H else {}
        out = varlen(q, k, v, cu_seq_lens_q, cu_seq_lens_q, T, T, scale=scaling, **causal, **gqa)
    else:
        out = _documents_one_by_one(q, k, v, cu_seq_lens_q, scaling, dropout)
    return out.reshape(B, T, H, D), None


@torch.compiler.disable  # the documents' lengths are data: one eager call between compiled layers
def _documents_one_by_one(q, k, v, cu_seq_lens: torch.Tensor, scaling: float | None, dropout: float) -> torch.Tensor:
    """Each document [s, e) of the flattened batch attends causally to itself alone: one SDPA call each."""
    groups = q.shape[1] // k.shape[1]
    k, v = (x.repeat_interleave(groups, dim=1) if groups > 1 else x for x in (k, v))  # as repeat_kv, on (N, H, D)
    bounds = cu_seq_lens.tolist()  # one sync a layer: the eager form's lengths are Python numbers
    pieces = [
        F.scaled_dot_product_attention(q[s:e].transpose(0, 1)[None], k[s:e].transpose(0, 1)[None],
                                       v[s:e].transpose(0, 1)[None], dropout_p=dropout, is_causal=True, scale=scaling)
        [0].transpose(0, 1)
        for s, e in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(pieces)


def _packed_mask(*args, attention_mask: torch.Tensor | None = None, **kwargs):
    """No mask for packed batches (the boundaries travel as `cu_seq_lens_q`); SDPA's for padded ones."""
    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(PACKED_DOCUMENT_ATTENTION, packed_document_attention)
AttentionMaskInterface.register(PACKED_DOCUMENT_ATTENTION, _packed_mask)


def choose_attention(model: torch.nn.Module, device: torch.device, seq_len: int, compiled: bool,
                     batch_size: int | None = None, *, document_mask: bool = False) -> str:
    """Switch a model that runs SDPA to the fastest form that gives its results here; the name in use.

    Packed documents where the objective masks documents and either a GPU runs (no mask keeps it on
    flash kernels) or the CPU trains blocks of `PACKED_MIN_TOKENS_CPU` or more; short blocks where
    `use_short_block_attention` says; SDPA otherwise.
    """
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if (document_mask and current == "sdpa" and getattr(config, "model_type", None) in PLAIN_DECODER_FAMILIES
            and (device.type == "cuda" or seq_len >= PACKED_MIN_TOKENS_CPU) and hasattr(model, "set_attn_implementation")):
        try:
            model.set_attn_implementation(PACKED_DOCUMENT_ATTENTION)
            return PACKED_DOCUMENT_ATTENTION
        except (ValueError, NotImplementedError):
            pass
    if use_short_block_attention(model, device, seq_len, compiled, batch_size):
        return SHORT_BLOCK_ATTENTION
    return current or "eager"


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
