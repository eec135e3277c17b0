"""Masked-token evaluation: accuracy and bits per byte over the masked positions.

Held-out documents are packed into blocks the way training packs them, then masked with the
training objective's own rule under a fixed seed, so every model (and the baseline) is asked
the very same questions. Bits per byte here divides the NLL of the masked tokens by the bytes
those tokens stand for. The unigram baseline always answers the most frequent ordinary token
and scores the truth with its training frequency.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.evaluation.bits_per_byte import Score
from selfsup.train.hardware import autocast

IGNORE = -100


def heldout_blocks(seqs: list[list[int]], seq_len: int) -> list[torch.Tensor]:
    """Documents (each ending with EOS) concatenated and cut into blocks; a short tail block is kept."""
    stream = [t for seq in seqs for t in seq[1:]]  # drop the leading EOS: packing appends, not prepends
    return [torch.tensor(stream[i : i + seq_len], dtype=torch.long) for i in range(0, len(stream), seq_len)]


def masked_questions(blocks: list[torch.Tensor], objective, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) per block, masked by the training rule with a fixed seed: the same for every model."""
    gen = torch.Generator().manual_seed(seed)
    return [objective.mask(b[None, :], gen) for b in blocks]


@torch.no_grad()
def score_masked(model, questions, byte_lengths: np.ndarray, *, batch_size: int, device, amp_dtype) -> tuple[Score, float]:
    """(Score over masked tokens, accuracy) for a masked-LM model."""
    model.eval()
    nll, count, n_bytes, correct = 0.0, 0, 0, 0
    for inputs, labels in _batched(questions, batch_size):
        with autocast(device, amp_dtype):
            logits = model(input_ids=inputs.to(device)).logits.float()
        labels = labels.to(device)
        sel = labels != IGNORE
        if not sel.any():
            continue
        chosen = logits[sel]
        truth = labels[sel]
        nll += F.cross_entropy(chosen, truth, reduction="sum").item()
        correct += int((chosen.argmax(-1) == truth).sum())
        count += int(sel.sum())
        n_bytes += int(byte_lengths[truth.cpu().numpy()].sum())
    return Score(nll=nll, tokens=count, bytes=n_bytes, documents=0), correct / max(count, 1)


def _batched(questions, batch_size: int):
    """Stack consecutive questions of equal length into batches."""
    group: list = []
    for q in questions:
        if group and (len(group) == batch_size or group[0][0].shape != q[0].shape):
            yield torch.cat([g[0] for g in group]), torch.cat([g[1] for g in group])
            group = []
        group.append(q)
    if group:
        yield torch.cat([g[0] for g in group]), torch.cat([g[1] for g in group])


def score_unigram_masked(log_probs: np.ndarray, questions, byte_lengths: np.ndarray, special: list[int]) -> tuple[Score, float]:
    ordinary = log_probs.copy()
    ordinary[special] = -np.inf
    best = int(np.argmax(ordinary))
    nll, count, n_bytes, correct = 0.0, 0, 0, 0
    for _, labels in questions:
        truth = labels[labels != IGNORE].numpy()
        nll -= float(log_probs[truth].sum())
        correct += int((truth == best).sum())
        count += len(truth)
        n_bytes += int(byte_lengths[truth].sum())
    return Score(nll=nll, tokens=count, bytes=n_bytes, documents=0), correct / max(count, 1)
