"""mlm — masked language modelling (BERT): hide some words, predict them from both sides.

What it needs: packed blocks of token ids and a tokenizer with a mask token. Any encoder with a
masked-LM head (`AutoModelForMaskedLM`). Whole-word masking (the default) also needs the
tokenizer's vocabulary, to find where words start (`words.py`: works for byte-level BPE,
SentencePiece and WordPiece alike, from token strings, not from BERT's `##`).

What labels it makes: a share `mask_rate` (default 15%) of the non-special tokens is selected;
of those, `mask_replace` (80%) become the mask token, `random_replace` (10%) a random ordinary
token, and the rest (10%) stay as they are (decided per token, as BERT and transformers'
collators do). Labels hold the original token at selected positions and -100 (ignored)
everywhere else. Special tokens (EOS between documents, padding, BOS, the mask token, the
objectives' sentinels) are never selected, and random replacements are never special.

What is selected, by `[objective]` settings:
- `whole_word = true` (default): each word is selected with probability `mask_rate`, and then
  all of its tokens are — so the share of tokens selected is `mask_rate` too, in expectation,
  and a word's other pieces never give its masked piece away.
- `mask_spans = true`: SpanBERT's spans of whole words: a span starts at a word with
  probability `mask_rate / E[length]` and covers Geometric(`span_p`) words, capped at
  `max_span_words` (mean ≈ 3.8 words at the defaults). Overlapping spans merge, so the token
  rate lands a little under `mask_rate`.
- `whole_word = false`: single tokens, each with probability `mask_rate` (original BERT).

How it relates to the others: the objective of BERT/RoBERTa; sees context on both sides, so it
suits encoders for classification and retrieval, not generation. `clm` predicts every token
from the left only; `span` (T5) replaces each span by one sentinel and generates it back;
`tsdae` deletes words and reconstructs the sentence from one vector.

Example (whole words; "Ġ" marks a leading space):
    block  = [the  Ġcat  Ġsat  Ġon  Ġthe  Ġmat  ress  </s>]
    inputs = [the  Ġcat  Ġsat  Ġon  Ġthe  <mask> <mask> </s>]
    labels = [-100 -100  -100  -100 -100  Ġmat  ress  -100]
"""

from __future__ import annotations

import torch

from selfsup.models.lora import unwrap_lora
from selfsup.objectives.words import WordBoundaries, word_index

IGNORE = -100


class MaskedLM:
    name = "mlm"

    def __init__(
        self,
        special_ids: dict[str, int | None],
        vocab_size: int,
        mask_rate: float = 0.15,
        mask_replace: float = 0.8,
        random_replace: float = 0.1,
        *,
        words: WordBoundaries | None = None,
        mask_spans: bool = False,
        span_p: float = 0.2,
        max_span_words: int = 10,
    ) -> None:
        if special_ids.get("mask") is None:
            raise ValueError("mlm needs a tokenizer with a mask token")
        if mask_spans and words is None:
            raise ValueError("span masking works on whole words: pass `words` (WordBoundaries of the tokenizer)")
        self.mask_id = int(special_ids["mask"])
        self.special = sorted({int(i) for i in special_ids.values() if i is not None})
        self.mask_rate = mask_rate
        self.mask_replace = mask_replace
        self.random_replace = random_replace
        self.words = words  # None: token-level selection
        self.mask_spans = mask_spans
        self.span_p = span_p
        self.max_span_words = max_span_words
        ordinary = torch.ones(vocab_size, dtype=torch.bool)
        ordinary[self.special] = False
        self.ordinary_ids = torch.nonzero(ordinary).flatten()  # random replacements come from here

    # Set by the training loop where the model is called directly (one process); under DDP / FSDP
    # the model must be entered through its wrapper, so the head runs on every position there.
    predict_masked_only = False

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the labelled (selected) positions.

        transformers' masked-LM models score every position with the vocabulary head and then
        ignore the 85% that carry no label. With `predict_masked_only` the encoder runs on the
        whole block and the head only on the labelled rows, as fast BERT pretraining recipes
        do: the same loss and gradients (tests/objectives/test_mlm.py), and on a small model,
        where the vocabulary projection is much of the compute, a much shorter step.
        """
        model = unwrap_lora(model)
        head = _masked_lm_head(model) if self.predict_masked_only else None
        if head is None:
            return model(**batch).loss  # transformers' own loss: mean over labelled positions
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).last_hidden_state
        labels = batch["labels"].reshape(-1)
        rows = torch.nonzero(labels != IGNORE).squeeze(1)
        scores = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows))
        return torch.nn.functional.cross_entropy(scores.float(), labels.index_select(0, rows))

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        inputs, labels = self.mask(blocks, generator)
        return {"input_ids": inputs, "labels": labels}

    def mean_span_words(self) -> float:
        """E[span length in words] of Geometric(span_p) capped at max_span_words."""
        p, n = self.span_p, self.max_span_words
        probs = [p * (1 - p) ** (k - 1) for k in range(1, n)]
        return sum(k * q for k, q in enumerate(probs, 1)) + n * (1 - sum(probs))

    def select(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T) bool: the positions whose tokens become labels."""
        device = blocks.device
        special = torch.isin(blocks, torch.tensor(self.special, device=device))
        draw = torch.rand(blocks.shape, generator=generator, device=device)
        if self.words is None:
            return (draw < self.mask_rate) & ~special
        starts = self.words.starts(blocks)  # (B, T)
        word = word_index(starts)  # (B, T) word number of each token
        B, T = blocks.shape
        # One draw per word, read at the word's first token; words indexed 0..W-1 (W ≤ T).
        word_draw = torch.ones(B, T, device=device).scatter_reduce(1, word, torch.where(starts, draw, 1.0), reduce="amin")
        if not self.mask_spans:
            word_selected = word_draw < self.mask_rate  # (B, W)
        else:
            # Geometric(p) span lengths by inversion, capped; a span starting at word w covers
            # words w .. w+len-1. Coverage = running max of span ends > word index.
            u = torch.rand(B, T, generator=generator, device=device).clamp_min(1e-12)
            length = torch.ceil(torch.log(u) / torch.log1p(torch.tensor(-self.span_p))).clamp(1, self.max_span_words)
            if self.span_p >= 1.0:
                length = torch.ones_like(length)
            begins = word_draw < self.mask_rate / self.mean_span_words()
            w = torch.arange(T, device=device).expand(B, T)
            ends = torch.where(begins, w + length.long(), torch.zeros_like(w))
            word_selected = torch.cummax(ends, dim=1).values > w
        return word_selected.gather(1, word) & ~special

    def mask(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids → (inputs, labels), drawing every random number from `generator`."""
        device = blocks.device
        selected = self.select(blocks, generator)
        labels = torch.where(selected, blocks, torch.full_like(blocks, IGNORE))

        how = torch.rand(blocks.shape, generator=generator, device=device)
        to_mask = selected & (how < self.mask_replace)
        to_random = selected & (how >= self.mask_replace) & (how < self.mask_replace + self.random_replace)
        pick = torch.randint(len(self.ordinary_ids), blocks.shape, generator=generator, device=device)
        random_tokens = self.ordinary_ids.to(device)[pick]

        inputs = torch.where(to_mask, torch.full_like(blocks, self.mask_id), blocks)
        inputs = torch.where(to_random, random_tokens, inputs)
        return inputs, labels


def _masked_lm_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The vocabulary head of a BERT- or RoBERTa-style masked LM (`cls` / `lm_head`), if it has one."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module) and hasattr(model, "base_model"):
            return head
    return None
