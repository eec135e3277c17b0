"""Fill-in-the-middle exact match: can the model write a held-out document's missing middle?

For each held-out document a middle of 1–8 tokens is cut at a position drawn with a fixed seed;
the model reads [EOS] <fim_prefix> prefix <fim_suffix> suffix <fim_middle> (prefix and suffix
clipped to fit the block) and must write middle + EOS. Exact match is scored in one teacher-forced
pass: greedy decoding writes the middle exactly if and only if, at every step, the arg-max next
token given the true tokens so far is the true token — so all-arg-max-correct *is* greedy exact
match, without a generate loop. Token accuracy over the same positions is reported beside it.
The unigram baseline always writes the most frequent ordinary token.
"""

from __future__ import annotations

import numpy as np
import torch

from selfsup.train.hardware import autocast

MAX_MIDDLE = 8


def fim_questions(seqs: list[list[int]], ids: dict[str, int | None], seq_len: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(prompt, answer) per document long enough: answer = middle + [EOS]."""
    rng = np.random.default_rng(seed)
    eos, P, M, S = ids["eos"], ids["fim_prefix"], ids["fim_middle"], ids["fim_suffix"]
    out = []
    for seq in seqs:
        doc = seq[1:-1]  # [EOS] + doc + [EOS] → doc
        if len(doc) < 12:
            continue
        n = int(rng.integers(1, MAX_MIDDLE + 1))
        lo = int(rng.integers(1, len(doc) - n))
        context = (seq_len - n - 6) // 2
        prefix, middle, suffix = doc[max(0, lo - context) : lo], doc[lo : lo + n], doc[lo + n : lo + n + context]
        out.append(([eos, P, *prefix, S, *suffix, M], [*middle, eos]))
    return out


@torch.no_grad()
def score_fim(model, questions, *, batch_size: int, device, amp_dtype, pad_id: int) -> dict[str, float]:
    model.eval()
    exact, right, total = 0, 0, 0
    for i in range(0, len(questions), batch_size):
        chunk = questions[i : i + batch_size]
        width = max(len(p) + len(a) for p, a in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (p, a) in enumerate(chunk):
            ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            attn[row, : len(p) + len(a)] = 1
        with autocast(device, amp_dtype):
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
        guess = logits.argmax(-1).cpu()
        for row, (p, a) in enumerate(chunk):
            pred = guess[row, len(p) - 1 : len(p) - 1 + len(a)].tolist()  # position t predicts t+1
            hits = sum(int(x == y) for x, y in zip(pred, a))
            exact += int(hits == len(a))
            right += hits
            total += len(a)
    return {"fim_exact_match": exact / max(len(questions), 1), "fim_token_accuracy": right / max(total, 1),
            "fim_questions": len(questions)}


def score_unigram_fim(log_probs: np.ndarray, questions, special: list[int]) -> dict[str, float]:
    ordinary = log_probs.copy()
    ordinary[special] = -np.inf
    best = int(np.argmax(ordinary))
    exact = sum(int(all(t == best for t in a)) for _, a in questions)
    right = sum(sum(int(t == best) for t in a) for _, a in questions)
    total = sum(len(a) for _, a in questions)
    return {"fim_exact_match": exact / max(len(questions), 1), "fim_token_accuracy": right / max(total, 1),
            "fim_questions": len(questions)}
