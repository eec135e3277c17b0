"""Fixtures for the tokenizer tests: tiny corpora written as the ingest stage writes them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydoc_data.topics import topics

from selfsup.config import TokenizerConfig
from selfsup.tokens import train_tokenizer

MIXED = [
    "Grüße aus Zürich: naïve café, déjà vu — “quotes” and ‘apostrophes’.",
    "Emoji 😀🚀👩‍💻🇫🇷 mixed with text 🙂.",
    "中文文本，日本語のテキスト、한국어 텍스트.",
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # circle\n\n\tindent\ttabs\r\n",
    "SELECT id, name FROM users WHERE email LIKE '%@example.com';",
]


def _write_corpus(corpus_dir: Path, train: Sequence[str], validation: Sequence[str] = (), parts: int = 1) -> Path:
    """Write train then validation documents as `part-*.parquet` shards (columns id, text, source, split)."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    rows = [(t, "train") for t in train] + [(t, "validation") for t in validation]
    per_part = max(1, -(-len(rows) // parts))
    for k in range(parts):
        chunk = rows[k * per_part : (k + 1) * per_part]
        table = pa.table(
            {
                "id": [f"doc-{k}-{i}" for i in range(len(chunk))],
                "text": [t for t, _ in chunk],
                "source": [f"file-{k}-{i}.txt" for i in range(len(chunk))],
                "split": [s for _, s in chunk],
            }
        )
        pq.write_table(table, corpus_dir / f"part-{k:05d}.parquet")
    return corpus_dir


def _sample_documents() -> list[str]:
    return list(topics.values())[:25] + MIXED


@pytest.fixture
def write_corpus():
    """`write_corpus(dir, train_docs, validation_docs=(), parts=1) -> dir`."""
    return _write_corpus


@pytest.fixture
def sample_documents() -> list[str]:
    """About 120 KB of English prose and code (Python's own docs) plus unicode-heavy lines."""
    return _sample_documents()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE (vocab 400) trained once for the whole session."""
    root = tmp_path_factory.mktemp("tok")
    corpus = _write_corpus(root / "corpus", _sample_documents(), ["held out validation text"])
    train_tokenizer(corpus, root / "tokenizer", TokenizerConfig(vocab_size=400), fingerprint="session")
    return root / "tokenizer"
