"""Shared fixtures: a small real corpus taken through the real ingest, tokenizer and pack stages.

Hermetic and fast: the text is Python's own language reference (always installed), the tokenizer
is a ~500-token BPE trained in-process, blocks are 64 tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_reference_docs(folder: Path, n: int = 80, max_chars: int = 6000) -> Path:
    """n real documents (language reference topics) as .txt files."""
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(sorted(topics)[:n]):
        (folder / f"{name}.txt").write_text(topics[name][:max_chars], encoding="utf-8")
    return folder


def small_recipe(sources: list[Path], objective: str = "clm", **train):
    from selfsup.config import Recipe

    recipe = Recipe()
    recipe.corpus.sources = sources
    recipe.corpus.validation_fraction = 0.1
    recipe.tokenizer.vocab_size = 500
    recipe.pack.seq_len = 64
    recipe.objective.name = objective
    recipe.train.batch_size = 4
    recipe.train.max_steps = train.pop("max_steps", 12)
    recipe.train.warmup_steps = 2
    recipe.train.eval_every = 5
    recipe.train.eval_batches = 2
    recipe.train.progress = False
    recipe.eval.max_documents = 6
    recipe.eval.max_tokens = 3000
    recipe.eval.samples = 2
    recipe.eval.sample_tokens = 8
    for key, value in train.items():
        setattr(recipe.train, key, value)
    return recipe


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> dict:
    """corpus/, tokenizer/ and shards/ built once for the session by the real stages."""
    from selfsup.ingest import ingest_sources
    from selfsup.pack import pack_corpus
    from selfsup.tokens import train_tokenizer

    root = tmp_path_factory.mktemp("prepared")
    docs = write_reference_docs(root / "docs")
    recipe = small_recipe([docs])
    ingest_sources([docs], root / "corpus", recipe.corpus)
    train_tokenizer(root / "corpus", root / "tokenizer", recipe.tokenizer, "fp-tok")
    pack_corpus(root / "corpus", root / "tokenizer", root / "shards", recipe.pack, "fp-pack")
    return {"root": root, "docs": docs, "corpus": root / "corpus", "tokenizer": root / "tokenizer", "shards": root / "shards"}
