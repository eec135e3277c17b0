"""Shared set-up for the benchmarks: the demo's sample corpus taken through our real stages.

Absolute times on shared machines are noise; every benchmark prints ratios measured in one
process, ours against a baseline on the same model, data and machine, plus a final JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfsup.config import Recipe  # noqa: E402
from selfsup.ingest import ingest_sources  # noqa: E402
from selfsup.pack import pack_corpus  # noqa: E402
from selfsup.sample_corpus import build_sample_corpus  # noqa: E402
from selfsup.tokens import train_tokenizer  # noqa: E402

CACHE = Path(os.environ.get("SELFSUP_BENCH_CACHE", Path(tempfile.gettempdir()) / "selfsup-bench"))


def prepared_data(seq_len: int = 256, vocab_size: int = 8192) -> dict[str, Path]:
    """corpus/, tokenizer/, shards/ for the sample corpus (cached between benchmark runs)."""
    root = CACHE / f"data-{vocab_size}-{seq_len}"
    shards = root / "shards"
    if not (shards / "manifest.json").exists():
        sample = build_sample_corpus(CACHE / "sample-corpus")
        recipe = Recipe()
        recipe.tokenizer.vocab_size = vocab_size
        recipe.pack.seq_len = seq_len
        ingest_sources([sample / "reference", sample / "stdlib"], root / "corpus", recipe.corpus)
        train_tokenizer(root / "corpus", root / "tokenizer", recipe.tokenizer, "bench")
        pack_corpus(root / "corpus", root / "tokenizer", shards, recipe.pack, "bench")
    return {"root": root, "corpus": root / "corpus", "tokenizer": root / "tokenizer", "shards": shards}


def train_ours(shards: Path, tokenizer: Path, recipe: Recipe, skip: int | None = None) -> tuple[float, dict]:
    """`selfsup.train` for the recipe's steps in a throw-away run directory: steady tokens/s (the harmonic mean
    of the per-step rates after the first `skip` steps, i.e. tokens over time; None skips the first 20%, at
    least one: compilation and allocator warm-up) and the run's summary."""
    from selfsup.train import train, train_fingerprint

    with tempfile.TemporaryDirectory() as out:
        summary = train(shards, tokenizer, Path(out) / "run", recipe,
                        fingerprint=train_fingerprint(recipe, "bench", "bench"), fresh=True)
        lines = (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(x)["tokens_per_s"] for x in lines if "tokens_per_s" in x]
    steady = rates[max(1, len(rates) // 5) if skip is None else skip:] or rates[-1:]
    return len(steady) / sum(1 / r for r in steady), summary


def emit(result: dict) -> None:
    """The final line every benchmark prints: one JSON object with its figures."""
    print(json.dumps(result, sort_keys=True))
