"""Fixtures for the tokenizer tests: tiny corpora written as the ingest stage writes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydoc_data.topics import topics

from selfsup.config import TokenizerConfig
from tests.corpus_writer import write_parquet_corpus
from selfsup.tokens import train_tokenizer

MIXED = [
    "Grüße aus Zürich: naïve café, déjà vu — “quotes” and ‘apostrophes’.",
    "Emoji 😀🚀👩‍💻🇫🇷 mixed with text 🙂.",
    "中文文本，日本語のテキスト、한국어 텍스트.",
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # circle\n\n\tindent\ttabs\r\n",
    "SELECT id, name FROM users WHERE email LIKE '%@example.com';",
]


def _sample_documents() -> list[str]:
    return list(topics.values())[:25] + MIXED


@pytest.fixture
def write_corpus():
    """`write_corpus(dir, train_docs, validation_docs=(), parts=1) -> dir`."""
    return write_parquet_corpus


@pytest.fixture
def sample_documents() -> list[str]:
    """About 120 KB of English prose and code (Python's own docs) plus unicode-heavy lines."""
    return _sample_documents()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE (vocab 400) trained once for the whole session."""
    root = tmp_path_factory.mktemp("tok")
    corpus = write_parquet_corpus(root / "corpus", _sample_documents(), ["held out validation text"])
    train_tokenizer(corpus, root / "tokenizer", TokenizerConfig(vocab_size=400), fingerprint="session")
    return root / "tokenizer"
