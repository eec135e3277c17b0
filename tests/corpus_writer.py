"""Write a corpus directory exactly as the ingest stage does, for stage tests that start after it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet_corpus(corpus_dir: Path, train: Sequence[str], validation: Sequence[str] = (), parts: int = 1) -> Path:
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
