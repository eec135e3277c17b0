"""span — T5 span corruption: replace spans by sentinels, generate the spans back.

What it needs: packed blocks of token ids, a tokenizer with sentinels `<extra_id_0..N>` (every
tokenizer selfsup trains reserves 32, ids 8–39) and an encoder-decoder
(`T5ForConditionalGeneration`, `AutoModelForSeq2SeqLM`).

What labels it makes (Raffel et al. 2020, the T5 defaults): of a block of L tokens,
round(L · noise_density) are noise, in round(noise / mean_noise_span_length) spans whose lengths,
and the lengths of the clean stretches between them, are random segmentations (the noise never
starts the block). Each noise span is replaced in the input by one sentinel; the target lists
each sentinel followed by the span it hides; both end with EOS:

    input  = clean₀ <extra_id_0> clean₁ <extra_id_1> … </s>       (L − noise + spans + 1 tokens)
    target = <extra_id_0> noise₀ <extra_id_1> noise₁ … </s>        (noise + spans + 1 tokens)

The counts are fixed for a given L, so every block gives inputs and targets of the same lengths:
no padding, ever. Lengths: `[pack] seq_len` is the *raw* block length L (what the packer packs);
the encoder sees `span_lengths(L)[0]` tokens. To give the encoder exactly N tokens, as T5 does,
set seq_len to `compute_input_and_target_lengths(N)[0]` (T5's own function; N=512 → 568).
`span_reconstruct` interleaves input and target by sentinel and gives the block back exactly
(a property test checks it for any block).

How it relates to the others: `mlm` hides single words and predicts them in place; span
corruption hides spans and *generates* them, so the decoder learns to write. `fim` is the
decoder-only cousin with one long gap.

Example (L=8, two spans):
    block  = [a b c d e f g h]
    input  = [a b <extra_id_0> e f <extra_id_1> h </s>]
    target = [<extra_id_0> c d <extra_id_1> g </s>]
"""

from __future__ import annotations

import torch

from selfsup.errors import UsageError


def _counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) of a block, clamped as T5's random_spans_noise_mask does."""
    noise = min(max(int(round(length * noise_density)), 1), length - 1)
    spans = max(int(round(noise / mean_noise_span_length)), 1)
    return noise, min(spans, noise, length - noise)


def span_lengths(length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(input length, target length) for a raw block of `length` tokens (EOS included in both)."""
    noise, spans = _counts(length, noise_density, mean_noise_span_length)
    return length - noise + spans + 1, noise + spans + 1


def compute_input_and_target_lengths(inputs_length: int, noise_density: float = 0.15,
                                     mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """T5's function: the raw length whose corruption fills `inputs_length` exactly, and its target length."""
    tokens_length = inputs_length
    while span_lengths(tokens_length + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, span_lengths(tokens_length, noise_density, mean_noise_span_length)[1]


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """(length,) bool: T5's noise mask — alternating clean / noise stretches, clean first."""
    noise, spans = _counts(length, noise_density, mean_noise_span_length)

    def segmentation(items: int, segments: int) -> torch.Tensor:
        # `segments` positive lengths summing to `items`: choose segments-1 cut points among items-1.
        cuts = torch.zeros(items - 1, dtype=torch.bool)
        cuts[torch.randperm(items - 1, generator=generator)[: segments - 1]] = True
        segment_id = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), cuts.long()]), 0)
        return torch.bincount(segment_id, minlength=segments)

    noise_lengths = segmentation(noise, spans)
    clean_lengths = segmentation(length - noise, spans)
    interleaved = torch.stack([clean_lengths, noise_lengths], dim=1).reshape(-1)  # clean, noise, clean, noise…
    is_noise = torch.repeat_interleave(torch.arange(2 * spans) % 2 == 1, interleaved)
    return is_noise


class SpanCorruption:
    name = "span"

    def __init__(self, special_ids: dict[str, int | None], *, noise_density: float = 0.15,
                 mean_noise_span_length: float = 3.0) -> None:
        self.sentinels = []
        while special_ids.get(f"extra_id_{len(self.sentinels)}") is not None:
            self.sentinels.append(int(special_ids[f"extra_id_{len(self.sentinels)}"]))
        if not self.sentinels:
            raise ValueError("span needs sentinel tokens <extra_id_0>, <extra_id_1>, … in the tokenizer; "
                             "train the tokenizer with selfsup (it reserves them) or reuse a T5 tokenizer")
        self.eos_id = int(special_ids["eos"])
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length

    def lengths(self, length: int) -> tuple[int, int]:
        return span_lengths(length, self.noise_density, self.mean_noise_span_length)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss  # mean over target tokens; T5 shifts labels right itself

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """(B, L) → input_ids (B, L − noise + spans + 1), labels (B, noise + spans + 1)."""
        B, L = blocks.shape
        spans = _counts(L, self.noise_density, self.mean_noise_span_length)[1]
        if spans > len(self.sentinels):
            raise UsageError(
                f"span corruption of {L}-token blocks needs {spans} sentinels but the tokenizer has "
                f"{len(self.sentinels)}; lower [pack] seq_len or raise [objective] mean_noise_span_length"
            )
        inputs, targets = [], []
        for row in blocks.tolist():
            noise = random_spans_noise_mask(L, self.noise_density, self.mean_noise_span_length, generator).tolist()
            i, t = self.corrupt(row, noise)
            inputs.append(i)
            targets.append(t)
        return {"input_ids": torch.tensor(inputs, dtype=torch.long, device=blocks.device),
                "labels": torch.tensor(targets, dtype=torch.long, device=blocks.device)}

    def corrupt(self, row: list[int], noise: list[bool]) -> tuple[list[int], list[int]]:
        """One block and its noise mask → (input, target), each ending with EOS."""
        inp, tgt, k = [], [], -1
        for pos, (token, is_noise) in enumerate(zip(row, noise)):
            if is_noise:
                if pos == 0 or not noise[pos - 1]:  # a span begins: one sentinel stands for it
                    k += 1
                    inp.append(self.sentinels[k])
                    tgt.append(self.sentinels[k])
                tgt.append(token)
            else:
                inp.append(token)
        return inp + [self.eos_id], tgt + [self.eos_id]

    def reconstruct(self, inputs: list[int], targets: list[int]) -> list[int]:
        return span_reconstruct(inputs, targets, self.sentinels)


def span_reconstruct(inputs: list[int], targets: list[int], sentinels: list[int]) -> list[int]:
    """Interleave input and target by sentinel: the original block (both trailing EOS dropped)."""
    sentinel_set = set(sentinels)
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets[:-1]:
        if token in sentinel_set:
            current = token
            spans[current] = []
        elif current is not None:
            spans[current].append(token)
    out: list[int] = []
    for token in inputs[:-1]:
        out.extend(spans.get(token, []) if token in sentinel_set else [token])
    return out
