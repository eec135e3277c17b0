"""The eval stage: held-out documents → `eval.json`, the trained model beside its baselines.

`eval.json` holds one entry per text set and per model:

    {"objective": "clm", "sets": {"heldout": {"trained": {...}, "unigram": {...}}}, "samples": [...]}

with `loss`, `perplexity`, `bits_per_byte`, `tokens`, `bytes`, `documents` for every model, and
`masked_accuracy` for masked objectives, `fim_middle_bits_per_byte` / `fim_exact_match` /
`fim_token_accuracy` for fim (held-out lines, evaluation/infill.py),
`span_exact_match` for span; embedding objectives (contrastive, tsdae) report retrieval instead
(`recall_at_1`, `recall_at_10`, `mrr`, `queries`, `passages`, and the same per query kind under
`kinds`) for `trained`, `untrained` (the base, for a continued run) and `bm25`, with
`retrieval_examples`: a query of each kind and every model's top 3 (evaluation/retrieval.py). The held-out set is the corpus's validation split: the
documents training never saw.

Language-model objectives (clm, fim, mlm) also get the proof of lift (lift.py):

    "sets":      {"heldout": {"trained", "unigram", "base"?}, "<general set>": {"trained", "unigram", "base"?}, ...}
    "lift":      {"base": path | null, "base_cached": bool,
                  "domain": {"set", "base", "adapted", "change"} | null,       (bits per byte; change = relative)
                  "general": [{"set", "base", "adapted", "change"}, ...], "forgetting": mean general change | null}
    "cloze":     {"probes", "candidates", "models": {"trained", "base"?, "chance": {"top1", "mrr"}},
                  "examples": [{"text", "answer", "candidates", "picks": {model: term}, "ranks": {model: rank}}]}
    "fertility": {"texts": "heldout", "tokenizers": {"base" | "domain" | "adapted":
                  {"tokens_per_word", "bytes_per_token", "tokens", "words", "bytes", "vocab_size"}}}
    "base_cache": the base model's results, keyed on a hash of everything they depend on

General sets come from `[eval] texts`; `base` appears where the recipe has `[model] base`, and
`trained` is then the adapted model. Older readers that know only `sets.heldout.trained` and
`unigram` read this file as before.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.config import Recipe, settings_hash
from selfsup.console import say
from selfsup.errors import UsageError
from selfsup.evaluation.bits_per_byte import document_sequences, score_clm, score_unigram_clm, unigram_log_probs
from selfsup.evaluation.masked import heldout_blocks, masked_questions, score_masked, score_unigram_masked
from selfsup.evaluation.samples import fill_mask_samples, generate_samples
from selfsup.ingest import read_documents
from selfsup.manifest import write_json_atomic
from selfsup.evaluation.infill import fim_examples, fim_questions, score_fim, score_unigram_fim
from selfsup.evaluation.lift import LIFT_OBJECTIVES, measure_lift
from selfsup.evaluation.retrieval import RetrievalSet, rank_with_bm25, rank_with_model, retrieval_examples
from selfsup.evaluation.spans import (
    decoder_span_questions,
    score_decoder_spans,
    score_spans,
    score_unigram_spans,
    span_questions,
)
from selfsup.models import build_model, count_parameters, load_base_for_training, load_pretrained
from selfsup.objectives import get_objective
from selfsup.pack import TokenShards
from selfsup.tokens import document_encoder, document_opener, load_tokenizer, special_ids, token_byte_lengths
from selfsup.train import find_latest
from selfsup.train.hardware import autocast_dtype, pick_device

EVAL_SEED = 1234


def evaluate_fingerprint(recipe: Recipe, *digests: str | None) -> str:
    return settings_hash("eval", recipe.eval, recipe.objective, *digests)


def resolve_model_dir(path: Path) -> Path:
    """A model directory itself, or a run directory (→ its newest verified checkpoint)."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    latest, problems = find_latest(path)
    if latest is None:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise UsageError(f"{path} is neither a model directory nor a run with a valid checkpoint{detail}; run `selfsup train` first")
    return latest


def evaluate(
    model_path: Path,
    corpus_dir: Path,
    tokenizer_dir: Path,
    shards_dir: Path,
    out_path: Path,
    recipe: Recipe,
    *,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    cfg = recipe.eval
    objective_name = recipe.model_objective  # "clm" for every decoder run: span on a decoder and mixes too
    names = recipe.objective.names
    model_dir = resolve_model_dir(model_path)
    device = pick_device()
    amp = autocast_dtype(recipe.train.precision, device)
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = special_ids(tokenizer)
    model = load_pretrained(model_dir, objective_name).to(device)
    shards = TokenShards(shards_dir, "train")
    seq_len = shards.seq_len

    texts = [d["text"] for d in islice(read_documents(corpus_dir, split="validation", columns=("text",)), cfg.max_documents)]
    if not texts:
        raise UsageError(f"{corpus_dir} has no validation documents to evaluate on; raise [corpus] validation_fraction")
    seqs, _, n_bytes = document_sequences(texts, document_encoder(tokenizer), ids["eos"], cfg.max_tokens, document_opener(tokenizer))
    all_texts, texts = texts, texts[: len(seqs)]  # cloze and fertility read every held-out document read
    model_vocab = _vocab_rows(model)
    # One pass over the training tokens; padded vocabulary rows were never seen (smoothing covers them).
    counts = np.zeros(model_vocab, dtype=np.int64)
    seen = shards.token_counts()[:model_vocab]
    counts[: len(seen)] = seen
    log_probs = unigram_log_probs(counts)

    eval_kw = dict(device=device, amp_dtype=amp)
    special = [i for i in ids.values() if i is not None]
    samples: list[dict] = []
    examples = None  # retrieval examples, for embedding objectives
    if objective_name in ("clm", "fim"):
        trained = score_clm(model, seqs, n_bytes, seq_len=seq_len, batch_size=cfg.batch_size, pad_id=ids["pad"], **eval_kw).metrics()
        unigram = score_unigram_clm(log_probs, seqs, n_bytes).metrics()
        tasks = DecoderTasks.for_run(recipe, tokenizer, texts, seqs, seq_len, _byte_lengths(tokenizer, _vocab_rows(model)))
        trained |= tasks.score(model, batch_size=cfg.batch_size, **eval_kw)
        unigram |= tasks.score_unigram(log_probs, special)
        samples = generate_samples(model, tokenizer, texts, n=cfg.samples, new_tokens=cfg.sample_tokens, seed=EVAL_SEED)
        models = {"trained": trained, "unigram": unigram}
    elif objective_name == "mlm":
        objective = get_objective(recipe.objective, ids, _vocab_rows(model))
        questions = masked_questions(heldout_blocks(seqs, seq_len), objective, EVAL_SEED)
        byte_lengths = _byte_lengths(tokenizer, _vocab_rows(model))
        score, accuracy = score_masked(model, questions, byte_lengths, batch_size=cfg.batch_size, device=device, amp_dtype=amp)
        trained = {**score.metrics(), "masked_accuracy": accuracy, "documents": len(seqs)}
        uscore, uaccuracy = score_unigram_masked(log_probs, questions, byte_lengths, special)
        unigram = {**uscore.metrics(), "masked_accuracy": uaccuracy, "documents": len(seqs)}
        samples = fill_mask_samples(model, tokenizer, texts, n=cfg.samples)
        models = {"trained": trained, "unigram": unigram}
    elif objective_name == "span":
        objective = get_objective(recipe.objective, ids, _vocab_rows(model))
        questions = span_questions(heldout_blocks(seqs, seq_len), objective, EVAL_SEED)
        byte_lengths = _byte_lengths(tokenizer, _vocab_rows(model))
        trained = {**score_spans(model, questions, byte_lengths, objective.sentinels, **eval_kw), "documents": len(seqs)}
        unigram = {**score_unigram_spans(log_probs, questions, byte_lengths, objective.sentinels, special), "documents": len(seqs)}
        models = {"trained": trained, "unigram": unigram}
    else:  # contrastive, tsdae: held-out queries a person would type → their passages (evaluation/retrieval.py)
        retrieval_set = RetrievalSet.from_texts(all_texts, EVAL_SEED)
        if len(retrieval_set) < 2:
            raise UsageError(f"found {len(retrieval_set)} retrieval questions in the held-out documents (headings, "
                             "paragraphs of two sentences or more); raise [corpus] validation_fraction")
        kw = dict(width=recipe.objective.passage_tokens, pad_id=ids["pad"], device=device)
        rankings = {
            "trained": rank_with_model(model, tokenizer, retrieval_set, **kw),
            "untrained": rank_with_model(_model_before_training(recipe, tokenizer, ids, shards).to(device), tokenizer,
                                         retrieval_set, **kw),
            "bm25": rank_with_bm25(retrieval_set),
        }
        models = {name: r.metrics(retrieval_set) for name, r in rankings.items()}
        examples = retrieval_examples(retrieval_set, rankings, EVAL_SEED)

    result = {
        "objective": objective_name,
        "objectives": names,
        "fingerprint": fingerprint,
        "model": {"path": str(model_dir), "parameters": count_parameters(model)},
        "sets": {"heldout": models},
        "samples": samples,
    }
    if examples is not None:
        result["retrieval_examples"] = examples
    if objective_name in LIFT_OBJECTIVES:
        result |= measure_lift(model, tokenizer, recipe=recipe, heldout_texts=texts, probe_texts=all_texts, heldout=models, corpus_dir=corpus_dir,
                               seq_len=seq_len, log_probs=log_probs, previous=read_eval(out_path), **eval_kw)
        models = result["sets"]["heldout"]
    if objective_name == "clm" and tasks.any():
        fillers = {"trained": model}
        if recipe.model.base is not None:
            # The base cannot fill in with sentinels it never had: it is scored as training started, with
            # the added sentinels' rows set as the train loop set them (the mean of their spelling's rows).
            start = load_base_for_training(recipe.model.model_copy(update={"lora": False}), "clm", tokenizer_dir).to(device)
            models.setdefault("base", {}).update(tasks.score(start, batch_size=cfg.batch_size, **eval_kw))
            result["base_task_note"] = "base scored on infill with the added sentinel rows as training started from them"
            fillers = {"base": start, **fillers}
        if tasks.fim:
            result["infill_examples"] = fim_examples(fillers, tokenizer, tasks.fim, ids, EVAL_SEED, device=device)
    result["seconds"] = time.perf_counter() - started
    write_json_atomic(Path(out_path), result)
    say(f"[green]evaluated[/] {len(all_texts) if examples is not None else len(seqs)} held-out documents: {headline(objective_name, models)}")
    return result


@dataclass
class DecoderTasks:
    """The task questions of a decoder run's infilling objectives, fixed once and asked of any model:
    held-out middles for fim, hidden spans for span on a decoder (both seeded by EVAL_SEED)."""

    fim: list | None
    spans: list | None
    span_sentinels: list[int]
    byte_lengths: np.ndarray
    pad_id: int

    @classmethod
    def for_run(cls, recipe: Recipe, tokenizer, texts: list[str], seqs, seq_len: int, byte_lengths: np.ndarray) -> DecoderTasks:
        """`texts`: the held-out documents scored for bits per byte; `seqs` their token sequences."""
        names, ids = recipe.objective.names, special_ids(tokenizer)
        fim = (fim_questions(texts, document_encoder(tokenizer), ids, seq_len, EVAL_SEED, opener=document_opener(tokenizer))
               if "fim" in names else None)
        spans, sentinels = None, []
        if "span" in names:
            objective = get_objective(recipe.objective, ids, len(byte_lengths), decoder=True, name="span")
            spans, sentinels = decoder_span_questions(seqs, objective, seq_len, EVAL_SEED), objective.sentinels
        return cls(fim, spans, sentinels, byte_lengths, ids["pad"])

    def any(self) -> bool:
        return self.fim is not None or self.spans is not None

    def score(self, model, *, batch_size: int, device, amp_dtype) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.fim is not None:
            out |= score_fim(model, self.fim, batch_size=batch_size, pad_id=self.pad_id, device=device, amp_dtype=amp_dtype)
        if self.spans is not None:
            s = score_decoder_spans(model, self.spans, self.byte_lengths, self.span_sentinels, batch_size=batch_size,
                                    pad_id=self.pad_id, device=device, amp_dtype=amp_dtype)
            out |= {"span_bits_per_byte": s["bits_per_byte"], "span_exact_match": s["span_exact_match"], "spans": s["spans"]}
        return out

    def score_unigram(self, log_probs: np.ndarray, special: list[int]) -> dict[str, Any]:
        return score_unigram_fim(log_probs, self.fim, special) if self.fim is not None else {}


def headline(objective: str, models: dict[str, dict]) -> str:
    """One line: the trained model's main figure next to its first baseline."""
    t = models["trained"]
    if "mrr" in t:
        return (f"recall@1 {t['recall_at_1']:.1%}, MRR {t['mrr']:.3f} (BM25 {models['bm25']['mrr']:.3f}, "
                f"untrained {models['untrained']['mrr']:.3f})")
    u = models["unigram"]
    line = f"{t['bits_per_byte']:.3f} bits/byte (unigram {u['bits_per_byte']:.3f}, {100 * (1 - t['bits_per_byte'] / u['bits_per_byte']):+.0f}% better)"
    for key in ("masked_accuracy", "fim_exact_match", "span_exact_match"):
        if key in t:
            line += f", {key.replace('_', ' ')} {t[key]:.1%}"
    if "base" in models:
        b = models["base"]["bits_per_byte"]
        line += f"; base model {b:.3f} bits/byte ({100 * (t['bits_per_byte'] / b - 1):+.1f}%)"
    return line


def _vocab_rows(model) -> int:
    """Rows of the model's embedding table (an EncoderDecoderModel keeps them in its encoder's config)."""
    return model.get_input_embeddings().weight.shape[0]


def _byte_lengths(tokenizer, size: int):
    byte_lengths = token_byte_lengths(tokenizer)
    if len(byte_lengths) < size:
        byte_lengths = torch.nn.functional.pad(torch.from_numpy(byte_lengths), (0, size - len(byte_lengths))).numpy()
    return byte_lengths


def _model_before_training(recipe: Recipe, tokenizer, ids, shards: TokenShards):
    """The baseline embedding model: the base model, or the preset initialised as training initialised it."""
    if recipe.model.base is not None:
        return load_pretrained(recipe.model.base, recipe.model_objective)
    torch.manual_seed(recipe.train.seed)  # the train loop seeds exactly so before build_model
    return build_model(recipe.model_objective, recipe.model.preset, vocab_size=max(len(tokenizer), shards.vocab_size),
                       seq_len=shards.seq_len, special_ids=ids, dropout=recipe.model.dropout)


def read_eval(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
