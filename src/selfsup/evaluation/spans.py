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


# Span corruption on a decoder (objectives/span.py `DecoderSpanCorruption`): a held-out document is
# written as training writes it, text with sentinels and then each sentinel and its span, and one
# teacher-forced pass scores the spans. Greedy decoding writes a span exactly iff the arg-max is the
# true token at each of its positions and at the token closing it (the next sentinel, or EOS).
DECODER_SPAN_GROWTH = 1.12  # a corrupted document is ≈ 10% longer (two sentinels per span of ~3 tokens)


def decoder_span_questions(seqs: list[list[int]], objective, seq_len: int, seed: int) -> list[tuple[list[int], list[bool]]]:
    """(tokens, is_span_target) per window of a held-out document ([opener] + doc + [EOS] as from
    document_sequences): each document is cut into windows that fit one block once corrupted, and
    each window is written as training writes a document, opened as documents are; the spans come
    last and end with EOS."""
    from selfsup.objectives.span import MIN_CORRUPTED_TOKENS, random_spans_noise_mask

    gen = torch.Generator().manual_seed(seed)
    window = int((seq_len - 2) / DECODER_SPAN_GROWTH)
    out = []
    for seq in seqs:
        doc = seq[1:-1] if seq and seq[-1] == objective.eos_id else seq[1:]
        for start in range(0, len(doc), window):
            piece = doc[start : start + window]
            if len(piece) < MIN_CORRUPTED_TOKENS:
                continue
            noise = random_spans_noise_mask(len(piece), objective.noise_density, objective.mean_noise_span_length, gen)
            rewritten, _ = objective.corrupt(piece, noise.tolist())
            first_span = rewritten.index(objective.sentinels[0], rewritten.index(objective.sentinels[0]) + 1)
            tokens = [seq[0], *rewritten, objective.eos_id]
            is_target = [False] * (first_span + 1) + [True] * (len(tokens) - first_span - 1)
            out.append((tokens[:seq_len], is_target[:seq_len]))
    return out


@torch.no_grad()
def score_decoder_spans(model, questions, byte_lengths: np.ndarray, sentinels: list[int], *, batch_size: int, pad_id: int,
                        device, amp_dtype) -> dict[str, float]:
    """Bits per byte of the hidden spans' tokens and the share of spans greedy decoding writes exactly."""
    model.eval()
    sentinel_set = set(sentinels)
    nll_noise, noise_bytes, exact, n_spans = 0.0, 0, 0, 0
    for i in range(0, len(questions), batch_size):
        chunk = questions[i : i + batch_size]
        width = max(len(t) for t, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (tokens, _) in enumerate(chunk):
            ids[r, : len(tokens)] = torch.tensor(tokens)
            attn[r, : len(tokens)] = 1
        with autocast(device, amp_dtype):
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
        for r, (tokens, is_target) in enumerate(chunk):
            # position p predicts token p + 1: targets are tokens[p + 1] where is_target[p + 1]
            pos = torch.tensor([p for p in range(len(tokens) - 1) if is_target[p + 1]], dtype=torch.long)
            if not len(pos):
                continue
            truth = torch.tensor(tokens, device=device)[pos + 1]
            nll = F.cross_entropy(logits[r, pos], truth, reduction="none")
            right = (logits[r, pos].argmax(-1) == truth).tolist()
            labels = truth.tolist()
            noise = torch.tensor([t not in sentinel_set for t in labels[:-1]] + [False], device=device)  # the last closes
            nll_noise += float(nll[noise].sum())
            noise_bytes += int(byte_lengths[truth[noise].cpu().numpy()].sum())
            for s, e in _spans(labels, sentinel_set):
                exact += int(all(right[s:e]))
                n_spans += 1
    return {"bits_per_byte": nll_noise / (math.log(2) * max(noise_bytes, 1)), "span_exact_match": exact / max(n_spans, 1),
            "spans": n_spans, "bytes": noise_bytes, "documents": len(questions)}
