"""Fill-in-the-middle on held-out documents: can the model write a missing line?

A middle is a whole line of a held-out document (10–160 characters: a sentence of a paragraph, a
line of a code block, a table row), several per document, chosen with a fixed seed; the prefix is
the text before it and the suffix the text after, each clipped to fit the block. Prefix, middle
and suffix are encoded separately, and the model reads
[opener] <fim_prefix> prefix <fim_suffix> suffix <fim_middle> and must write middle + EOS.

- `fim_middle_bits_per_byte`: the middle's negative log-likelihood over its UTF-8 bytes
  (tokenizer-independent, so base and adapted compare even across vocabularies);
- `fim_exact_match`: in one teacher-forced pass, greedy decoding writes the middle exactly if and
  only if, at every step, the arg-max next token given the true tokens so far is the true token
  (EOS included: it must also stop), so all-arg-max-correct *is* greedy exact match, without a
  generate loop; `fim_token_accuracy` over the same positions.
The unigram baseline always writes the most frequent ordinary token.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.train.hardware import autocast

MIN_LINE_CHARS, MAX_LINE_CHARS = 10, 160
LINES_PER_DOCUMENT = 6


def fim_questions(texts: list[str], encoder, ids: dict[str, int | None], seq_len: int, seed: int, *,
                  opener: int | None = None, per_document: int = LINES_PER_DOCUMENT) -> list[tuple[list[int], list[int], int]]:
    """(prompt, answer, middle bytes) per chosen line: answer = middle + [EOS]."""
    eos, P, M, S = ids["eos"], ids["fim_prefix"], ids["fim_middle"], ids["fim_suffix"]
    out = []
    for k, text in enumerate(texts):
        lines, a = [], 0  # (start, end) of each line after the first, whose text qualifies
        for line in text.split("\n"):
            if a and MIN_LINE_CHARS <= len(line.strip()) <= MAX_LINE_CHARS:
                lines.append((a, a + len(line)))
            a += len(line) + 1
        for a, b in sorted(random.Random(seed * 1_000_003 + k).sample(lines, min(per_document, len(lines)))):
            prefix, middle, suffix = (e.ids for e in encoder.encode_batch_fast([text[:a], text[a:b], text[b:]],
                                                                                add_special_tokens=False))
            context = (seq_len - len(middle) - 6) // 2
            if context < 8:
                continue
            prompt = [opener if opener is not None else eos, P, *prefix[-context:], S, *suffix[:context], M]
            out.append((prompt, [*middle, eos], len(text[a:b].encode("utf-8"))))
    return out


@torch.no_grad()
def score_fim(model, questions, *, batch_size: int, device, amp_dtype, pad_id: int) -> dict[str, float]:
    model.eval()
    exact, right, total, nll, n_bytes = 0, 0, 0, 0.0, 0
    for i in range(0, len(questions), batch_size):
        chunk = questions[i : i + batch_size]
        width = max(len(p) + len(a) for p, a, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (p, a, _) in enumerate(chunk):
            ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            attn[row, : len(p) + len(a)] = 1
        with autocast(device, amp_dtype):
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
        for row, (p, a, b) in enumerate(chunk):
            at = logits[row, len(p) - 1 : len(p) - 1 + len(a)].float().cpu()  # position t predicts t+1
            truth = torch.tensor(a)
            hits = (at.argmax(-1) == truth).tolist()
            exact += int(all(hits))
            right += sum(hits)
            total += len(a)
            nll += float(F.cross_entropy(at[:-1], truth[:-1], reduction="sum"))  # the middle's tokens, not its EOS
            n_bytes += b
    return {"fim_exact_match": exact / max(len(questions), 1), "fim_token_accuracy": right / max(total, 1),
            "fim_middle_bits_per_byte": nll / (math.log(2) * max(n_bytes, 1)), "fim_questions": len(questions)}


def score_unigram_fim(log_probs: np.ndarray, questions, special: list[int]) -> dict[str, float]:
    ordinary = log_probs.copy()
    ordinary[special] = -np.inf
    best = int(np.argmax(ordinary))
    exact = sum(int(all(t == best for t in a)) for _, a, _ in questions)
    right = sum(sum(int(t == best) for t in a) for _, a, _ in questions)
    total = sum(len(a) for _, a, _ in questions)
    nll = -sum(float(log_probs[np.asarray(a[:-1], dtype=np.int64)].sum()) for _, a, _ in questions)
    n_bytes = sum(b for _, _, b in questions)
    return {"fim_exact_match": exact / max(len(questions), 1), "fim_token_accuracy": right / max(total, 1),
            "fim_middle_bits_per_byte": nll / (math.log(2) * max(n_bytes, 1)), "fim_questions": len(questions)}


EXAMPLES = 3  # held-out lines shown in the report, each filled in by every model
SHOWN_CHARS = 160  # text shown on each side of the hidden line


@torch.no_grad()
def fim_examples(models: dict, tokenizer, questions, ids: dict[str, int | None], seed: int, *,
                 n: int = EXAMPLES, device) -> list[dict]:
    """A few questions drawn at random (seeded, not picked for a good result): the text before and after
    the hidden line, the line, and what each model writes there by greedy decoding (up to the line's
    length plus a few tokens; `exact` when it writes the line and stops, as `fim_exact_match` counts)."""
    picks = sorted(random.Random(seed).sample(range(len(questions)), min(n, len(questions))))
    out = []
    for i in picks:
        prompt, answer, _ = questions[i]
        s = prompt.index(ids["fim_suffix"])
        fills = {}
        for name, model in models.items():
            model.eval()
            written = model.generate(torch.tensor([prompt], device=device), max_new_tokens=len(answer) + 8, do_sample=False,
                                     eos_token_id=ids["eos"], pad_token_id=ids["pad"])[0, len(prompt):].tolist()
            stop = written.index(ids["eos"]) + 1 if ids["eos"] in written else len(written)
            fills[name] = {"text": tokenizer.decode(written[: stop - (written[stop - 1] == ids["eos"])]),
                           "exact": written[:stop] == answer}
        out.append({"before": tokenizer.decode(prompt[2:s])[-SHOWN_CHARS:], "after": tokenizer.decode(prompt[s + 1 : -1])[:SHOWN_CHARS],
                    "answer": tokenizer.decode(answer[:-1]), "fills": fills})
    return out
