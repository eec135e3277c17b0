"""Proof of lift: the adapted model beside its base, on domain and general text, in numbers a person reads.

For language-model objectives (clm, fim, mlm) `evaluate` hands its held-out results to
`measure_lift`, which adds:

- every general text set of `[eval] texts` as a set of its own (`trained`, `unigram`, and `base`);
- with `[model] base`: `base` beside `trained` in every set, each model scored with its *own*
  tokenizer (bits per byte does not care whose; an extended vocabulary stays comparable);
- `lift`: the domain change and, per general set, the change (adapted − base) / base; the mean
  general change is `forgetting` (positive: general text got worse);
- `cloze`: salient-term probes ranked by each model (cloze.py);
- `fertility`: tokens per word and bytes per token on the held-out domain text (fertility.py).

The base never changes while the adapted model does, so its results are kept in eval.json under
`base_cache`, keyed by a hash of everything they depend on (the base's files, the texts, the
probes, the settings): re-evaluating after more training scores only the adapted model.
"""

from __future__ import annotations

import hashlib
import json
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.config import Recipe, settings_hash
from selfsup.console import esc, say
from selfsup.errors import UsageError
from selfsup.evaluation.bits_per_byte import document_sequences, score_clm, score_unigram_clm
from selfsup.evaluation.cloze import domain_probes, ranks_of_answers, score_probes, summarise
from selfsup.evaluation.fertility import compare_fertility
from selfsup.evaluation.masked import heldout_blocks, masked_questions, score_masked, score_unigram_masked
from selfsup.evaluation.text_sets import TextSet, read_text_sets, spread
from selfsup.ingest import read_documents
from selfsup.manifest import file_sha256, manifest_digest
from selfsup.models import load_pretrained
from selfsup.objectives import get_objective
from selfsup.tokens import document_encoder, document_opener, load_tokenizer, special_ids, token_byte_lengths, vocab_size

LIFT_OBJECTIVES = ("clm", "fim", "mlm")
SEED = 1234
TERM_MINING_DOCUMENTS = 5000  # domain training documents read to find salient terms
GENERAL_MINING_PASSAGES = 1000  # general passages (of ~2000 characters) read to know common words
EXAMPLES = 6


def measure_lift(
    model,
    tokenizer,
    *,
    recipe: Recipe,
    heldout_texts: list[str],
    probe_texts: list[str],
    heldout: dict[str, dict],
    corpus_dir: Path,
    seq_len: int,
    log_probs: np.ndarray,
    device,
    amp_dtype,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """{"sets", "lift", "cloze", "fertility", "base_cache"} to merge into eval.json (see the module docstring).

    `heldout_texts` are the held-out documents scored for bits per byte (up to [eval] max_tokens);
    `probe_texts` all held-out documents read (up to max_documents), for cloze probes and fertility.
    """
    cfg = recipe.eval
    objective = recipe.model_objective
    kw = dict(recipe=recipe, seq_len=seq_len, device=device, amp_dtype=amp_dtype)
    # A large sample of each general set tells which words are common English (or common anywhere);
    # the scored sample is an evenly spread part of it.
    mined = read_text_sets(cfg.texts, max(GENERAL_MINING_PASSAGES, cfg.max_documents))
    general = [TextSet(s.name, s.path, spread(s.passages, cfg.max_documents)) for s in mined]
    sets: dict[str, dict] = {"heldout": dict(heldout)}
    for text_set in general:
        sets[text_set.name] = {
            "trained": score_texts(model, tokenizer, text_set.passages, **kw),
            "unigram": score_texts(None, tokenizer, text_set.passages, log_probs=log_probs, **kw),
        }

    domain_docs = [d["text"] for d in islice(read_documents(corpus_dir, split="train", columns=("text",)), TERM_MINING_DOCUMENTS)]
    base_dir = Path(recipe.model.base) if recipe.model.base is not None else None
    general_tokenizer = load_tokenizer(base_dir) if base_dir is not None and base_dir.is_dir() else None
    probes = domain_probes(domain_docs, [p for s in mined for p in s.passages], tokenizer, probe_texts, n=cfg.cloze_probes,
                           k=cfg.cloze_candidates, seed=SEED, general_tokenizer=general_tokenizer)
    scores = {"trained": score_probes(model, tokenizer, probes, objective, device=device, amp_dtype=amp_dtype)}

    if base_dir is not None and base_dir.suffix.lower() == ".gguf":
        raise UsageError(f"[model] base {base_dir} is a GGUF file; `selfsup run` imports it into WORKDIR/base: "
                         "point [model] base at that directory to evaluate on its own")
    cache = None
    if base_dir is not None:
        key = base_key(base_dir, recipe, seq_len, heldout_texts + probe_texts, general, probes, corpus_dir)
        cache = (previous or {}).get("base_cache")
        cached = isinstance(cache, dict) and cache.get("key") == key
        if not cached:
            say(f"[bold]eval[/] scoring the base model {esc(base_dir)} (kept in eval.json for later evaluations)")
            cache = score_base(base_dir, sets, general, heldout_texts, probe_texts, probes, corpus_dir, key, **kw)
        for name, metrics in cache["sets"].items():
            if name in sets:
                sets[name]["base"] = metrics
        scores["base"] = cache["cloze_scores"]
        fertility = dict(cache["fertility"])
        if vocab_size(tokenizer) != fertility["base"]["vocab_size"]:  # an extended vocabulary
            fertility["adapted"] = compare_fertility({"adapted": tokenizer}, probe_texts, None, None)["adapted"]
        cache = {**cache, "cached": cached}
    else:
        fertility = compare_fertility({"domain": tokenizer}, probe_texts, None, None)  # the run trained it on the domain

    out = {
        "sets": sets,
        "lift": lift_summary(sets, [s.name for s in general], base_dir, cache),
        "cloze": cloze_summary(probes, scores, cfg.cloze_candidates),
        "fertility": {"texts": "heldout", "tokenizers": fertility},
    }
    if cache is not None:
        out["base_cache"] = {k: v for k, v in cache.items() if k != "cached"}
    return out


def score_texts(model, tokenizer, texts: list[str], *, recipe: Recipe, seq_len: int, device, amp_dtype,
                log_probs: np.ndarray | None = None) -> dict[str, Any]:
    """bits per byte, perplexity (per token of this tokenizer) and, for mlm, masked accuracy on `texts`.

    `model=None` scores the unigram baseline from `log_probs` instead.
    """
    cfg = recipe.eval
    ids = special_ids(tokenizer)
    seqs, _, n_bytes = document_sequences(texts, document_encoder(tokenizer), ids["eos"], cfg.max_tokens, document_opener(tokenizer))
    if recipe.model_objective != "mlm":
        if model is None:
            return score_unigram_clm(log_probs, seqs, n_bytes).metrics()
        return score_clm(model, seqs, n_bytes, seq_len=seq_len, batch_size=cfg.batch_size, device=device,
                         amp_dtype=amp_dtype, pad_id=ids["pad"]).metrics()
    rows = len(log_probs) if model is None else model.get_input_embeddings().weight.shape[0]
    masker = get_objective(recipe.objective, ids, rows)
    questions = masked_questions(heldout_blocks(seqs, seq_len), masker, SEED)
    byte_lengths = np.pad(token_byte_lengths(tokenizer), (0, max(0, rows - vocab_size(tokenizer))))
    if model is None:
        score, accuracy = score_unigram_masked(log_probs, questions, byte_lengths, [i for i in ids.values() if i is not None])
    else:
        score, accuracy = score_masked(model, questions, byte_lengths, batch_size=cfg.batch_size, device=device, amp_dtype=amp_dtype)
    return {**score.metrics(), "masked_accuracy": accuracy, "documents": len(seqs)}


def score_base(base_dir: Path, sets: dict, general, heldout_texts: list[str], probe_texts: list[str], probes,
               corpus_dir: Path, key: str, *, recipe: Recipe, **kw) -> dict[str, Any]:
    """The base model's figures on every set, its cloze scores and its tokenizer's fertility."""
    kw["recipe"] = recipe
    base = load_pretrained(base_dir, recipe.model_objective).to(kw["device"])
    base_tok = load_tokenizer(base_dir)
    texts = {"heldout": heldout_texts, **{s.name: s.passages for s in general}}
    results = {name: score_texts(base, base_tok, texts[name], **kw) for name in sets}
    cloze = score_probes(base, base_tok, probes, recipe.model_objective, device=kw["device"], amp_dtype=kw["amp_dtype"])
    del base
    fertility = compare_fertility({"base": base_tok}, probe_texts, corpus_dir, vocab_size(base_tok))
    return {"key": key, "path": str(base_dir), "sets": results, "cloze_scores": cloze, "fertility": fertility}


def base_key(base_dir: Path, recipe: Recipe, seq_len: int, heldout_texts, general, probes, corpus_dir: Path) -> str:
    """Everything the base's results depend on: its files, the texts and probes, the settings."""
    files = sorted(p for p in base_dir.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".txt", ".model"))
    texts = hashlib.sha256(json.dumps([heldout_texts, [s.passages for s in general]]).encode()).hexdigest()
    eval_settings = recipe.eval.model_dump(mode="json", include={"max_tokens", "max_documents", "cloze_candidates"})
    return settings_hash("base-eval", {p.name: file_sha256(p) for p in files}, recipe.objective, eval_settings,
                         seq_len, texts, [p.as_dict() for p in probes], manifest_digest(corpus_dir))


def lift_summary(sets: dict, general_names: list[str], base_dir: Path | None, cache: dict | None) -> dict[str, Any]:
    """Relative changes (adapted − base) / base of bits per byte: the domain gain and, per general set, the cost."""

    def change(name: str) -> dict[str, Any] | None:
        models = sets.get(name, {})
        if "base" not in models or "trained" not in models:
            return None
        before, after = models["base"]["bits_per_byte"], models["trained"]["bits_per_byte"]
        return {"set": name, "base": before, "adapted": after, "change": (after - before) / before if before else None}

    domain = change("heldout")
    general = [c for c in (change(n) for n in general_names) if c is not None]
    changes = [g["change"] for g in general if g["change"] is not None]
    return {
        "base": str(base_dir) if base_dir else None,
        "base_cached": bool(cache and cache.get("cached")),
        "domain": domain,
        "general": general,
        "forgetting": sum(changes) / len(changes) if changes else None,
    }


def cloze_summary(probes, scores: dict[str, list[list[float]]], k: int) -> dict[str, Any]:
    """Accuracy per model (+ chance), overall and per kind of probe (term, definition, default,
    signature), and the first few probes of each kind with each model's pick."""
    ranks = {name: ranks_of_answers(probes, s) for name, s in scores.items()}
    models = {name: summarise(r, k) for name, r in ranks.items()}
    chance = {"top1": 1 / k, "mrr": sum(1 / r for r in range(1, k + 1)) / k, "probes": len(probes), "candidates": k}
    models["chance"] = chance
    kinds: dict[str, Any] = {}
    for kind in dict.fromkeys(p.kind for p in probes):
        idx = [i for i, p in enumerate(probes) if p.kind == kind]
        kinds[kind] = {name: summarise([r[i] for i in idx], k) for name, r in ranks.items()}
        kinds[kind]["chance"] = {**chance, "probes": len(idx)}
    examples = []
    for kind in kinds:
        for i in [i for i, p in enumerate(probes) if p.kind == kind][: EXAMPLES if kind == "term" else EXAMPLES // 2]:
            probe = probes[i]
            picks = {name: probe.candidates[int(np.argmax(s[i]))] for name, s in scores.items()}
            examples.append({"kind": kind, "text": probe.masked(), "answer": probe.answer, "candidates": probe.candidates,
                             "picks": picks, "ranks": {name: r[i] for name, r in ranks.items()}})
    return {"probes": len(probes), "candidates": k, "models": models, "kinds": kinds, "examples": examples}
