"""Read document texts out of a corpus directory, one split at a time, in bounded memory.

A stand-in with the same signature as `selfsup.ingest.iter_texts`, so the tokenizer and pack
stages do not depend on the ingest package while it is being written. The corpus contract it
reads: `part-*.parquet` shards with (at least) the columns `text` and `split`
("train" / "validation"), read in sorted file order so the document order is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfsup.errors import UsageError


def corpus_parts(corpus_dir: Path) -> list[Path]:
    """The corpus's Parquet shards in sorted order; UsageError if there are none."""
    corpus_dir = Path(corpus_dir)
    parts = sorted(corpus_dir.glob("part-*.parquet"))
    if not parts:
        raise UsageError(
            f"no part-*.parquet shards in corpus directory {corpus_dir}; run `selfsup ingest SOURCE... --out {corpus_dir}` first"
        )
    return parts


def count_documents(corpus_dir: Path) -> int:
    """Rows over all shards (both splits), from Parquet metadata alone: a cheap length hint."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in corpus_parts(corpus_dir))


def iter_texts(corpus_dir: Path, split: str | None = None, batch_size: int = 1000) -> Iterator[list[str]]:
    """Yield lists of up to `batch_size` document texts of `split` (None = every split), in corpus order.

    Memory is bounded by one Parquet record batch plus one output list, whatever the corpus size.
    """
    pending: list[str] = []
    columns = ["text"] if split is None else ["text", "split"]
    for part in corpus_parts(corpus_dir):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=max(batch_size, 1024), columns=columns):
            if split is not None:
                batch = batch.filter(pc.equal(batch.column("split"), split))
            pending.extend(t for t in batch.column("text").to_pylist() if t is not None)
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
    if pending:
        yield pending
