"""Bits per byte: held-out loss that can be compared across tokenizers.

Loss per token depends on how long the tokens are: a tokenizer with longer tokens has fewer,
harder predictions. Summing the negative log-likelihood of a document and dividing by its UTF-8
bytes gives a figure any two models can share, whatever their vocabularies:

    bits_per_byte = Σ −ln p(token) / (ln 2 · bytes)

Each held-out document is scored as [EOS] + tokens + [EOS] (the EOS that opens it is context,
the one that closes it is predicted), in consecutive windows of `seq_len`: every target token is
predicted exactly once. The unigram baseline scores the very same targets with token
frequencies from the training split (add-one smoothed), so the gap between the two is what the
model learned beyond word counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from selfsup.models.chunked_loss import target_nll
from selfsup.train.hardware import autocast

IGNORE = -100


@dataclass(slots=True)
class Score:
    nll: float  # summed negative log-likelihood, nats
    tokens: int  # predicted tokens
    bytes: int  # UTF-8 bytes of the scored text
    documents: int

    def metrics(self) -> dict[str, float | int]:
        loss = self.nll / max(self.tokens, 1)
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "bits_per_byte": self.nll / (math.log(2) * max(self.bytes, 1)),
            "tokens": self.tokens,
            "bytes": self.bytes,
            "documents": self.documents,
        }

    def as_dict(self) -> dict:
        return asdict(self)


def document_sequences(texts: list[str], encoder, eos_id: int, max_tokens: int,
                       opener: int | None = None) -> tuple[list[list[int]], int, int]:
    """[EOS] + ids + [EOS] per document, up to `max_tokens` targets in all ([BOS] + ids + [EOS] where
    the tokenizer's models expect BOS: `opener`, tokens/load.py `document_opener`).

    The document that reaches the cap is cut there (its first tokens, and the bytes they cover, no
    closing EOS): one long page must not multiply the cost of an evaluation.
    """
    seqs, total, n_bytes = [], 0, 0
    first = eos_id if opener is None else opener
    for text, enc in zip(texts, encoder.encode_batch_fast(texts, add_special_tokens=False)):
        room = max_tokens - total
        if len(enc.ids) + 1 > room:
            offsets = encoder.encode(text, add_special_tokens=False).offsets  # encode_batch_fast skips offsets
            text = text[: offsets[room - 1][1]]
            seq = [first, *enc.ids[:room]]
        else:
            seq = [first, *enc.ids, eos_id]
        seqs.append(seq)
        total += len(seq) - 1
        n_bytes += len(text.encode("utf-8"))
        if total >= max_tokens:
            break
    return seqs, total, n_bytes


def windows(seqs: list[list[int]], seq_len: int) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) pairs of at most seq_len tokens covering every target once."""
    out = []
    for seq in seqs:
        for start in range(0, len(seq) - 1, seq_len):
            inputs = seq[start : start + seq_len]
            targets = seq[start + 1 : start + 1 + seq_len]
            out.append((inputs[: len(targets)], targets))
    return out


@torch.no_grad()
def score_clm(model, seqs: list[list[int]], n_bytes: int, *, seq_len: int, batch_size: int, device, amp_dtype, pad_id: int) -> Score:
    """Summed next-token NLL of a causal model over the documents' targets."""
    model.eval()
    pairs = windows(seqs, seq_len)
    pairs.sort(key=lambda p: len(p[0]))  # similar lengths together: less padding
    nll, count = 0.0, 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        width = max(len(inp) for inp, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (inp, tgt) in enumerate(chunk):
            ids[row, : len(inp)] = torch.tensor(inp)
            labels[row, : len(tgt)] = torch.tensor(tgt)
            attn[row, : len(inp)] = 1
        with autocast(device, amp_dtype):  # models/chunked_loss.py: no full-vocabulary fp32 logits where it can
            nll += float(target_nll(model, {"input_ids": ids.to(device), "attention_mask": attn.to(device)}, labels.to(device)).sum())
        count += int((labels != IGNORE).sum())
    return Score(nll=nll, tokens=count, bytes=n_bytes, documents=len(seqs))


def unigram_log_probs(counts: np.ndarray) -> np.ndarray:
    """ln p(token) from training counts, add-one smoothed so unseen tokens are not impossible."""
    counts = counts.astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


def score_unigram_clm(log_probs: np.ndarray, seqs: list[list[int]], n_bytes: int) -> Score:
    nll, count = 0.0, 0
    for seq in seqs:
        targets = np.asarray(seq[1:], dtype=np.int64)
        nll -= float(log_probs[targets].sum())
        count += len(targets)
    return Score(nll=nll, tokens=count, bytes=n_bytes, documents=len(seqs))
