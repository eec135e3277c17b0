"""Span-corruption evaluation: loss per target token and exact match of the reconstructed spans.

Held-out documents are packed into blocks like training's and corrupted by the training rule under
a fixed seed, so every model (and the baseline) gets the same questions. Per block, one
teacher-forced decoder pass gives
- `loss`: mean cross-entropy over all target tokens (sentinels and EOS included: what training
  minimises);
- `bits_per_byte`: NLL of the hidden (noise) tokens over the bytes they stand for, comparable
  with the unigram baseline and across tokenizers;
- `span_exact_match`: share of spans whose tokens *and* the sentinel/EOS that closes them are all
  the arg-max prediction, i.e. spans greedy decoding writes exactly when given the true earlier
  spans.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.train.hardware import autocast


def span_questions(blocks: list[torch.Tensor], objective, seed: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [objective.make_batch(b[None, :], gen) for b in blocks if len(b) >= 8]


def _spans(labels: list[int], sentinels: set[int]) -> list[tuple[int, int]]:
    """[start, end) of each span's tokens *plus* its closing token (next sentinel or EOS), in target positions."""
    starts = [i for i, t in enumerate(labels) if t in sentinels]
    ends = starts[1:] + [len(labels) - 1]
    return [(s + 1, e + 1) for s, e in zip(starts, ends)]


@torch.no_grad()
def score_spans(model, questions, byte_lengths: np.ndarray, sentinels: list[int], *, device, amp_dtype) -> dict[str, float]:
    model.eval()
    sentinel_set = set(sentinels)
    nll_all, n_all, nll_noise, noise_bytes, exact, n_spans = 0.0, 0, 0.0, 0, 0, 0
    for q in questions:
        with autocast(device, amp_dtype):
            logits = model(input_ids=q["input_ids"].to(device), labels=q["labels"].to(device)).logits.float()
        labels = q["labels"].to(device)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none").view(labels.shape)
        guess = logits.argmax(-1)
        for row in range(labels.shape[0]):
            lab = labels[row].tolist()
            noise = torch.tensor([t not in sentinel_set for t in lab[:-1]] + [False], device=device)
            nll_all += float(nll[row].sum())
            n_all += len(lab)
            nll_noise += float(nll[row][noise].sum())
            noise_bytes += int(byte_lengths[labels[row][noise].cpu().numpy()].sum())
            for s, e in _spans(lab, sentinel_set):
                exact += int(bool((guess[row, s:e] == labels[row, s:e]).all()))
                n_spans += 1
    loss = nll_all / max(n_all, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_byte": nll_noise / (math.log(2) * max(noise_bytes, 1)),
            "span_exact_match": exact / max(n_spans, 1), "spans": n_spans, "tokens": n_all, "bytes": noise_bytes}


def score_unigram_spans(log_probs: np.ndarray, questions, byte_lengths: np.ndarray, sentinels: list[int], special: list[int]) -> dict[str, float]:
    sentinel_set = set(sentinels)
    ordinary = log_probs.copy()
    ordinary[special] = -np.inf
    best = int(np.argmax(ordinary))
    nll_all, n_all, nll_noise, noise_bytes, exact, n_spans = 0.0, 0, 0.0, 0, 0, 0
    for q in questions:
        for lab in q["labels"].tolist():
            arr = np.asarray(lab)
            nll_all -= float(log_probs[arr].sum())
            n_all += len(lab)
            noise = np.array([t not in sentinel_set for t in lab[:-1]] + [False])
            nll_noise -= float(log_probs[arr[noise]].sum())
            noise_bytes += int(byte_lengths[arr[noise]].sum())
            for s, e in _spans(lab, sentinel_set):
                exact += int(all(t == best for t in lab[s:e]))
                n_spans += 1
    loss = nll_all / max(n_all, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_byte": nll_noise / (math.log(2) * max(noise_bytes, 1)),
            "span_exact_match": exact / max(n_spans, 1), "spans": n_spans, "tokens": n_all, "bytes": noise_bytes}
