"""Self-supervised objectives: each turns a batch of packed token blocks into model inputs and labels.

One file per objective, each with the same docstring sections (what it needs, what labels it
makes, how it relates to the others, an example). All randomness comes from the `generator`
passed in, which the train loop seeds from (seed, step, micro-batch): the same step always sees
the same masks, so resuming needs no RNG bookkeeping for the data.
"""

from __future__ import annotations

from typing import Protocol

import torch

from selfsup.config import ObjectiveConfig
from selfsup.objectives.clm import CausalLM, packed_document_bounds
from selfsup.objectives.contrastive import Contrastive
from selfsup.objectives.fim import FillInTheMiddle
from selfsup.objectives.mix import MixedObjective
from selfsup.objectives.mlm import MaskedLM
from selfsup.objectives.span import DecoderSpanCorruption, SpanCorruption
from selfsup.objectives.tsdae import TSDAE
from selfsup.objectives.words import WordBoundaries


class Objective(Protocol):
    name: str

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, T) token ids → the tensors `compute_loss` needs (for HF models: forward kwargs + labels)."""
        ...

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of `model` on a batch made by `make_batch`."""
        ...


def get_objective(cfg: ObjectiveConfig, special_ids: dict[str, int | None], vocab_size: int, *, tokenizer=None,
                  decoder: bool = False, name: str | None = None) -> Objective:
    """The objective the recipe trains: the one named, or the mix of several (objectives/mix.py).

    `tokenizer` (default: `special_ids.tokenizer`, which `tokens.special_ids` attaches) is needed
    only to find word boundaries (mlm whole words, tsdae). `decoder` (`Recipe.decoder`): the model
    is a causal decoder, so `span` is laid out for one. `name` builds one part of a mix alone.
    """
    if cfg.mix and name is None:
        parts = {n: get_objective(cfg, special_ids, vocab_size, tokenizer=tokenizer, decoder=True, name=n) for n in cfg.mix}
        return MixedObjective(parts, dict(cfg.mix), eos_id=special_ids["eos"], document_mask=cfg.document_mask)
    name = name or cfg.name
    tokenizer = tokenizer if tokenizer is not None else getattr(special_ids, "tokenizer", None)
    special = [int(i) for i in special_ids.values() if i is not None]

    def words() -> WordBoundaries:
        if tokenizer is None:
            raise ValueError(f"{cfg.name} works on whole words and needs the tokenizer (pass tokenizer=...)")
        return WordBoundaries.from_tokenizer(tokenizer, vocab_size, special)

    if name == "clm":
        return CausalLM(eos_id=special_ids["eos"], document_mask=cfg.document_mask)
    if name == "mlm":
        return MaskedLM(
            special_ids=special_ids,
            vocab_size=vocab_size,
            mask_rate=cfg.mask_rate,
            mask_replace=cfg.mask_replace,
            random_replace=cfg.random_replace,
            words=words() if (cfg.whole_word or cfg.mask_spans) else None,
            mask_spans=cfg.mask_spans,
            span_p=cfg.span_p,
            max_span_words=cfg.max_span_words,
        )
    if name == "fim":
        return FillInTheMiddle(special_ids, fim_rate=cfg.fim_rate, spm_rate=cfg.spm_rate, document_mask=cfg.document_mask)
    if name == "span" and decoder:
        return DecoderSpanCorruption(special_ids, noise_density=cfg.noise_density,
                                     mean_noise_span_length=cfg.mean_noise_span_length, document_mask=cfg.document_mask)
    if name == "span":
        return SpanCorruption(special_ids, noise_density=cfg.noise_density, mean_noise_span_length=cfg.mean_noise_span_length)
    if name == "contrastive":
        return Contrastive(special_ids, passage_tokens=cfg.passage_tokens, temperature=cfg.temperature, positives=cfg.positives)
    if name == "tsdae":
        return TSDAE(special_ids, words(), passage_tokens=cfg.passage_tokens, deletion_rate=cfg.deletion_rate)
    raise ValueError(f"unknown objective {name!r}")


__all__ = ["TSDAE", "CausalLM", "Contrastive", "DecoderSpanCorruption", "FillInTheMiddle", "MaskedLM", "MixedObjective",
           "Objective", "SpanCorruption", "get_objective"]


# ---- a micro-batch shared by several processes (train/distributed.py my_pieces) ----

def labelled_tokens(objective, batch: dict[str, torch.Tensor]) -> int:
    """How many tokens the objective's loss averages over in `batch`: a piece of a micro-batch weighs its
    share of them, so pieces on several processes add up to the micro-batch's mean."""
    if "decoder_labels" in batch:  # tsdae: the decoder's tokens
        labels = batch["decoder_labels"]
    elif isinstance(getattr(objective, "clm", objective), CausalLM):  # position t is scored on token t+1
        labels = batch["labels"][:, 1:]
    else:  # mlm, span on T5: the labels as they stand
        labels = batch["labels"]
    return int((labels != -100).sum())


def batch_rows(objective, batch: dict[str, torch.Tensor], lo: int, hi: int) -> dict[str, torch.Tensor]:
    """Rows lo:hi of a batch made by `objective.make_batch` (every tensor is row-first; the packed documents'
    bounds run over the flattened batch, so they are made again for the rows kept)."""
    rows = {k: v[lo:hi] for k, v in batch.items() if k != "cu_seq_lens_q"}
    if "cu_seq_lens_q" in batch:
        rows["cu_seq_lens_q"] = packed_document_bounds(rows["input_ids"], getattr(objective, "clm", objective).eos_id)
    return rows
