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

On a decoder base (`[model] base` a causal LM, alone or in `[objective] mix`), `span` is
`DecoderSpanCorruption` below: the same noise, laid out for a left-to-right model.

Example (L=8, two spans):
    block  = [a b c d e f g h]
    input  = [a b <extra_id_0> e f <extra_id_1> h </s>]
    target = [<extra_id_0> c d <extra_id_1> g </s>]
"""

from __future__ import annotations

import torch

from selfsup.errors import UsageError
from selfsup.objectives.clm import CausalLM

IGNORE_INDEX = -100
MIN_CORRUPTED_TOKENS = 8  # a shorter document piece (a block's last few tokens) stays plain text


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


def sentinel_ids(special_ids: dict[str, int | None]) -> list[int]:
    """The ids of <extra_id_0>, <extra_id_1>, … in order, up to the first one missing."""
    out: list[int] = []
    while special_ids.get(f"extra_id_{len(out)}") is not None:
        out.append(int(special_ids[f"extra_id_{len(out)}"]))
    return out


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
        self.sentinels = sentinel_ids(special_ids)
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


class DecoderSpanCorruption:
    """span for a causal decoder: "mask a span, predict it" where the model reads left to right.

    Each document piece of a block (the text between EOS markers) is corrupted by T5's rule (the
    same noise density and span lengths as above), and its hidden spans move to the end of the
    document, each after the sentinel that stands for it: causal masking as in CM3 (Aghajanyan
    et al. 2022, arXiv 2201.07520), span corruption as in UL2R, which found a small share of such
    denoising in a decoder's continued training helps (Tay et al. 2022, arXiv 2210.11399):

        document  = [a b c d e f g h]
        rewritten = [a b <extra_id_0> e f <extra_id_1> h <extra_id_0> c d <extra_id_1> g]

    then the block is trained with the `clm` loss, document-masked like clm, except that a sentinel
    standing in the text is not a target (where a span was hidden cannot be predicted). To ask
    for an infill, write the text with sentinels and then the first sentinel: the model writes
    the spans in order. Each span costs two tokens more, so a block is cut back to its length and
    loses ≈ 10% of its last tokens at the T5 defaults (they carry on in the next block anyway).

    A decoder base has no `<extra_id_N>` tokens: the tokenizer stage adds them (tokens/extend.py
    `add_sentinels`) and each new embedding row starts as the mean of the rows of its spelling.
    """

    name = "span"

    def __init__(self, special_ids: dict[str, int | None], *, noise_density: float = 0.15,
                 mean_noise_span_length: float = 3.0, document_mask: bool = True) -> None:
        self.sentinels = sentinel_ids(special_ids)
        if not self.sentinels:
            raise ValueError("span on a decoder needs sentinel tokens <extra_id_0>, <extra_id_1>, … in the tokenizer; "
                             "the tokenizer stage adds them to a reused decoder tokenizer: rerun it")
        self.eos_id = int(special_ids["eos"])
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length
        self.clm = CausalLM(eos_id=self.eos_id, document_mask=document_mask)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.clm.compute_loss(model, batch)

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        ids, targets = self.transform_blocks(blocks, generator)
        batch = self.clm.make_batch(ids, generator)
        batch["labels"] = torch.where(targets, ids, torch.full_like(ids, IGNORE_INDEX))
        return batch

    def transform_blocks(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) → (B, T) rewritten ids and (B, T) bool: which positions are targets."""
        B, T = blocks.shape
        needed = _counts(T, self.noise_density, self.mean_noise_span_length)[1]
        if needed > len(self.sentinels):
            raise UsageError(
                f"span corruption of {T}-token documents needs up to {needed} sentinels but the tokenizer has "
                f"{len(self.sentinels)}; lower [pack] seq_len or raise [objective] mean_noise_span_length")
        rows, masks = [], []
        for row in blocks.tolist():
            new: list[int] = []
            target: list[bool] = []
            for k, piece in enumerate(_pieces(row, self.eos_id)):
                if k:
                    new.append(self.eos_id)
                    target.append(True)
                if len(piece) >= MIN_CORRUPTED_TOKENS:
                    noise = random_spans_noise_mask(len(piece), self.noise_density, self.mean_noise_span_length, generator)
                    piece, is_target = self.corrupt(piece, noise.tolist())
                else:
                    is_target = [True] * len(piece)
                new.extend(piece)
                target.extend(is_target)
            rows.append(new[:T])
            masks.append(target[:T])
        return (torch.tensor(rows, dtype=blocks.dtype, device=blocks.device),
                torch.tensor(masks, dtype=torch.bool, device=blocks.device))

    def corrupt(self, doc: list[int], noise: list[bool]) -> tuple[list[int], list[bool]]:
        """One document piece (no EOS) → text with sentinels, then each sentinel and its span; and
        which of those tokens are targets (all but the sentinels standing in the text)."""
        text, spans, k = [], [], -1
        for pos, (token, is_noise) in enumerate(zip(doc, noise)):
            if is_noise:
                if pos == 0 or not noise[pos - 1]:
                    k += 1
                    text.append(self.sentinels[k])
                    spans.append(self.sentinels[k])
                spans.append(token)
            else:
                text.append(token)
        sentinel_set = set(self.sentinels)
        return text + spans, [t not in sentinel_set for t in text] + [True] * len(spans)

    def inverse(self, rewritten: list[int]) -> list[int]:
        """The document piece a rewritten one came from (plain pieces come back as they are)."""
        if not self.sentinels or self.sentinels[0] not in rewritten:
            return list(rewritten)
        first = rewritten.index(self.sentinels[0])
        if self.sentinels[0] not in rewritten[first + 1 :]:
            return list(rewritten)  # cut before its spans: not invertible, returned as it is
        split = rewritten.index(self.sentinels[0], first + 1)
        return span_reconstruct(rewritten[:split] + [self.eos_id], rewritten[split:] + [self.eos_id], self.sentinels)


def _pieces(row: list[int], eos: int) -> list[list[int]]:
    """A block's document pieces, split at EOS (the EOS themselves dropped; k pieces for k−1 EOS)."""
    pieces, current = [], []
    for t in row:
        if t == eos:
            pieces.append(current)
            current = []
        else:
            current.append(t)
    pieces.append(current)
    return pieces
