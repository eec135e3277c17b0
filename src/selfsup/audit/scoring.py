"""One teacher-forced pass of a causal model over token rows: what every audit test reads.

For each row and each target position t (token t+1 given tokens 0..t):

    log_prob   ln p(actual next token)
    greedy     whether the actual next token is the argmax: greedy decoding from the prefix
               reproduces a suffix exactly iff this holds at every suffix position, so extraction
               needs no generation loop (Carlini et al. 2022 decode greedily)
    mu, sigma  mean and standard deviation of ln p(z) over the vocabulary, z ~ p: Min-K%++
               (Zhang et al. 2024) standardises each token's log-probability by them

The head is applied to chunks of positions in fp32, so a 49k vocabulary never makes a
(rows, T, V) logits tensor; rows are scored in batches of similar length (right padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfsup.models.chunked_loss import supports_chunked_head
from selfsup.models.lora import unwrap_lora
from selfsup.train.hardware import autocast

HEAD_CHUNK = 1024  # positions whose logits exist at once: 1024 × 49k × 4 bytes = 200 MB


@dataclass(slots=True)
class RowScores:
    """Per target position of one row (length = row length − 1)."""

    log_prob: np.ndarray
    greedy: np.ndarray | None = None
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None


@torch.no_grad()
def score_rows(model, rows: list[list[int]], *, batch_size: int, device, amp_dtype, pad_id: int,
               full: bool = True) -> list[RowScores]:
    """RowScores for each row, in the given order; `full=False` gives log_prob only (cheaper head)."""
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out: list[RowScores | None] = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(rows[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            ids[r, : len(rows[i])] = torch.tensor(rows[i])
            attn[r, : len(rows[i])] = 1
        ids, attn = ids.to(device), attn.to(device)
        with autocast(device, amp_dtype):
            hidden, head = _hidden_and_head(model, ids, attn)
        stats = _head_statistics(hidden[:, :-1], head, ids[:, 1:], full)
        for r, i in enumerate(chunk):
            n = len(rows[i]) - 1
            out[i] = RowScores(*(None if s is None else s[r, :n].cpu().numpy() for s in stats))
    return out  # type: ignore[return-value]


def _hidden_and_head(model, ids: torch.Tensor, attn: torch.Tensor):
    """(last hidden states, the output head) where the head is a plain linear layer; else (logits, None)."""
    if supports_chunked_head(model):
        target = unwrap_lora(model)
        return target.model(input_ids=ids, attention_mask=attn).last_hidden_state, target.get_output_embeddings().weight
    return model(input_ids=ids, attention_mask=attn).logits, None


def _head_statistics(hidden: torch.Tensor, head: torch.Tensor | None, targets: torch.Tensor, full: bool):
    b, t = targets.shape
    flat_hidden = hidden.reshape(b * t, hidden.shape[-1])
    flat_targets = targets.reshape(-1)
    log_prob = torch.empty(b * t, dtype=torch.float32, device=targets.device)
    greedy = torch.empty(b * t, dtype=torch.bool, device=targets.device) if full else None
    mu = torch.empty(b * t, dtype=torch.float32, device=targets.device) if full else None
    sigma = torch.empty(b * t, dtype=torch.float32, device=targets.device) if full else None
    with torch.autocast(targets.device.type, enabled=False):
        for s in range(0, b * t, HEAD_CHUNK):
            h = flat_hidden[s : s + HEAD_CHUNK].float()
            logits = h @ head.float().T if head is not None else h
            lp = torch.log_softmax(logits, dim=-1)
            tgt = flat_targets[s : s + HEAD_CHUNK]
            log_prob[s : s + HEAD_CHUNK] = lp.gather(1, tgt[:, None]).squeeze(1)
            if full:
                greedy[s : s + HEAD_CHUNK] = lp.argmax(dim=-1) == tgt
                p = lp.exp()
                m = (p * lp).sum(-1)
                mu[s : s + HEAD_CHUNK] = m
                sigma[s : s + HEAD_CHUNK] = ((p * lp * lp).sum(-1) - m * m).clamp_min(1e-12).sqrt()
    shape = (b, t)
    return tuple(None if x is None else x.reshape(shape) for x in (log_prob, greedy, mu, sigma))


@torch.no_grad()
def score_masked_rows(model, rows: list[list[int]], targets: list[np.ndarray], *, groups: int | None, mask_id: int,
                      batch_size: int, device, amp_dtype, pad_id: int) -> list[RowScores]:
    """Pseudo-log-likelihood (Salazar et al. 2020) of a masked LM: RowScores over each row's `targets`
    (positions in the row), each scored with itself masked and the rest of the row visible.

    Every row is copied `groups` times (None: once per target, exact PLL); copy k masks targets k,
    k + groups, ... So `groups` = 7 masks ~14% of a window per copy, as training masks 15%, at a
    seventh of exact PLL's cost. `greedy` is whether the masked token is the model's first guess.
    """
    model.eval()
    copies = []  # (row index, masked positions)
    for i, t in enumerate(targets):
        g = len(t) if groups is None else min(groups, len(t))
        copies += [(i, t[k::g]) for k in range(g)]
    collected: list[dict[int, tuple]] = [{} for _ in rows]
    order = sorted(range(len(copies)), key=lambda c: len(rows[copies[c][0]]))
    for start in range(0, len(order), batch_size):
        chunk = [copies[c] for c in order[start : start + batch_size]]
        width = max(len(rows[i]) for i, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (i, masked) in enumerate(chunk):
            ids[r, : len(rows[i])] = torch.tensor(rows[i])
            attn[r, : len(rows[i])] = 1
            ids[r, torch.as_tensor(masked)] = mask_id
        with autocast(device, amp_dtype):
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
        for r, (i, masked) in enumerate(chunk):
            at = torch.as_tensor(masked, device=logits.device)
            lp = torch.log_softmax(logits[r, at].float(), dim=-1)
            truth = torch.tensor([rows[i][p] for p in masked], device=lp.device)
            p = lp.exp()
            mu = (p * lp).sum(-1)
            sigma = ((p * lp * lp).sum(-1) - mu * mu).clamp_min(1e-12).sqrt()
            stats = zip(lp.gather(1, truth[:, None]).squeeze(1).tolist(), (lp.argmax(-1) == truth).tolist(),
                        mu.tolist(), sigma.tolist())
            collected[i].update(zip(masked.tolist(), stats))
    out = []
    for i, t in enumerate(targets):
        values = [collected[i][int(p)] for p in t]
        out.append(RowScores(*(np.array([v[k] for v in values], dtype=bool if k == 1 else np.float32) for k in range(4))))
    return out
