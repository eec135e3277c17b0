"""The eval stage: held-out documents → `eval.json`, the trained model beside its baselines.

`eval.json` holds one entry per text set and per model:

    {"objective": "clm", "sets": {"heldout": {"trained": {...}, "unigram": {...}}}, "samples": [...]}

with `loss`, `perplexity`, `bits_per_byte`, `tokens`, `bytes`, `documents` for every model, and
`masked_accuracy` for masked objectives. The held-out set is the corpus's validation split: the
documents training never saw.
"""

from __future__ import annotations

import json
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from selfsup.config import Recipe, settings_hash
from selfsup.console import say
from selfsup.errors import UsageError
from selfsup.evaluation.bits_per_byte import document_sequences, score_clm, score_unigram_clm, unigram_log_probs
from selfsup.evaluation.masked import heldout_blocks, masked_questions, score_masked, score_unigram_masked
from selfsup.evaluation.samples import fill_mask_samples, generate_samples
from selfsup.ingest import read_documents
from selfsup.manifest import write_json_atomic
from selfsup.models import count_parameters, load_pretrained
from selfsup.objectives import get_objective
from selfsup.pack import TokenShards
from selfsup.tokens import document_encoder, load_tokenizer, special_ids, token_byte_lengths
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
    objective_name = recipe.objective.name
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
    seqs, _, n_bytes = document_sequences(texts, document_encoder(tokenizer), ids["eos"], cfg.max_tokens)
    texts = texts[: len(seqs)]
    log_probs = unigram_log_probs(shards.token_counts()[: model.config.vocab_size])
    if len(log_probs) < model.config.vocab_size:  # padded vocabulary rows: never seen, smoothed
        counts = torch.zeros(model.config.vocab_size, dtype=torch.float64)
        counts[: shards.vocab_size] = torch.from_numpy(shards.token_counts()).double()
        log_probs = unigram_log_probs(counts.numpy())

    if objective_name == "clm":
        trained = score_clm(model, seqs, n_bytes, seq_len=seq_len, batch_size=cfg.batch_size, device=device,
                            amp_dtype=amp, pad_id=ids["pad"]).metrics()
        unigram = score_unigram_clm(log_probs, seqs, n_bytes).metrics()
        samples = generate_samples(model, tokenizer, texts, n=cfg.samples, new_tokens=cfg.sample_tokens, seed=EVAL_SEED)
    else:
        objective = get_objective(recipe.objective, ids, model.config.vocab_size)
        questions = masked_questions(heldout_blocks(seqs, seq_len), objective, EVAL_SEED)
        byte_lengths = token_byte_lengths(tokenizer)
        if len(byte_lengths) < model.config.vocab_size:
            byte_lengths = torch.nn.functional.pad(torch.from_numpy(byte_lengths), (0, model.config.vocab_size - len(byte_lengths))).numpy()
        score, accuracy = score_masked(model, questions, byte_lengths, batch_size=cfg.batch_size, device=device, amp_dtype=amp)
        trained = {**score.metrics(), "masked_accuracy": accuracy, "documents": len(seqs)}
        special = [i for i in ids.values() if i is not None]
        uscore, uaccuracy = score_unigram_masked(log_probs, questions, byte_lengths, special)
        unigram = {**uscore.metrics(), "masked_accuracy": uaccuracy, "documents": len(seqs)}
        samples = fill_mask_samples(model, tokenizer, texts, n=cfg.samples)

    result = {
        "objective": objective_name,
        "fingerprint": fingerprint,
        "model": {"path": str(model_dir), "parameters": count_parameters(model)},
        "sets": {"heldout": {"trained": trained, "unigram": unigram}},
        "samples": samples,
        "seconds": time.perf_counter() - started,
    }
    write_json_atomic(Path(out_path), result)
    gain = 1 - trained["bits_per_byte"] / unigram["bits_per_byte"]
    say(
        f"[green]evaluated[/] {len(seqs)} held-out documents: {trained['bits_per_byte']:.3f} bits/byte "
        f"(unigram {unigram['bits_per_byte']:.3f}, {100 * gain:+.0f}% better)"
        + (f", masked accuracy {trained['masked_accuracy']:.1%}" if "masked_accuracy" in trained else "")
    )
    return result


def read_eval(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
