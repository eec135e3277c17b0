"""Fixtures for the pack tests: corpora written as the ingest stage writes them, one tiny tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydoc_data.topics import topics

from selfsup.config import TokenizerConfig
from tests.corpus_writer import write_parquet_corpus
from selfsup.tokens import train_tokenizer

UNICODE = ["Emoji 😀🚀👩‍💻 and naïve café", "中文文本，日本語のテキスト", "def f(x):\n\treturn x ** 2\n", "literal </s> and <pad> tags"]


@pytest.fixture
def write_corpus():
    """`write_corpus(dir, train_docs, validation_docs=(), parts=1) -> dir`."""
    return write_parquet_corpus


@pytest.fixture(scope="session")
def documents() -> dict[str, list[str]]:
    """About 60 KB of Python's docs, unicode and code: train documents and validation documents."""
    docs = list(topics.values())[:12]
    train = [d[:4000] for d in docs] + UNICODE + ["short", "x"]
    validation = ["validation only: " + d[:1500] for d in list(topics.values())[40:44]]
    return {"train": train, "validation": validation}


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, documents: dict[str, list[str]]) -> Path:
    """A byte-level BPE (vocab 300) trained once for the whole session."""
    root = tmp_path_factory.mktemp("tok")
    corpus = write_parquet_corpus(root / "corpus", documents["train"])
    train_tokenizer(corpus, root / "tokenizer", TokenizerConfig(vocab_size=300), fingerprint="session")
    return root / "tokenizer"


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, documents: dict[str, list[str]]) -> Path:
    """The documents in three Parquet parts, so the reader crosses file boundaries."""
    return write_parquet_corpus(tmp_path_factory.mktemp("corpus") / "corpus", documents["train"], documents["validation"], parts=3)
