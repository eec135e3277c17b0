"""The corpus on disk: Parquet shards of documents, written and read in bounded memory.

Contract (the tokenizer, pack and eval stages read it): `documents/part-00000.parquet`,
`documents/part-00001.parquet`, ... with `cfg.shard_documents` documents each (the last one fewer),
zstd-compressed, columns

    id      string  16 hex characters, xxh3_64 of the normalised text
    text    string  the normalised text
    source  string  the input file's path; `path#lineN` for a record of a JSONL file
    split   string  "train" or "validation"
    language string ISO 639-1 code from language identification (null for code)

in the order the files were walked. Shards are written in row groups of at most 1,000 documents
or 8 MiB of text, and read back one record batch at a time, so neither side ever holds a shard.

The documents have a folder of their own, so the standard readers take it whole with one call:
`pd.read_parquet("work/corpus/documents")`, `pq.read_table(...)`,
`datasets.load_dataset("parquet", data_dir="work/corpus/documents")`. Beside it in `corpus/` are
the audit, the manifest and the extraction cache (Parquet of another schema), which a reader
given `corpus/` itself would try to read as documents. Work directories from before this layout
(shards in `corpus/` itself) are still read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfsup.errors import UsageError

SCHEMA = pa.schema(
    [("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("split", pa.string()), ("language", pa.string())]
)
SPLITS = ("train", "validation")
ROW_GROUP_DOCUMENTS = 1000
ROW_GROUP_BYTES = 8 * 2**20  # text buffered before a row group is written: bounds the writer's memory


DOCUMENTS = "documents"  # the shards' folder inside the corpus directory


def shard_name(index: int) -> str:
    """A shard's path relative to the corpus directory."""
    return f"{DOCUMENTS}/part-{index:05d}.parquet"


def corpus_parts(corpus_dir: Path) -> list[Path]:
    """The shards in order; UsageError (saying what to run) if there are none."""
    corpus_dir = Path(corpus_dir)
    parts = sorted((corpus_dir / DOCUMENTS).glob("part-*.parquet")) or sorted(corpus_dir.glob("part-*.parquet"))
    if not parts:
        raise UsageError(f"no corpus in {corpus_dir} (no {DOCUMENTS}/part-*.parquet); "
                         f"run `selfsup ingest SOURCE... --out {corpus_dir}` first")
    return parts


class ShardWriter:
    """Appends documents to numbered shards; `close()` flushes the last one.

    `shard_of_next` is the shard the next document goes to, so the caller can find a document
    again (the split rebalancing rewrites one shard).
    """

    def __init__(self, out_dir: Path, shard_documents: int) -> None:
        self.out_dir = Path(out_dir)
        self.shard_documents = shard_documents
        self.documents = 0
        self._rows: dict[str, list[str]] = {name: [] for name in SCHEMA.names}
        self._row_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._writer_index = -1

    @property
    def shard_of_next(self) -> int:
        return self.documents // self.shard_documents

    def add(self, doc_id: str, text: str, source: str, split: str, language: str | None = None) -> None:
        if self.documents % self.shard_documents == 0 and self.documents:
            self._flush()  # the next row starts a new shard
        for name, value in zip(SCHEMA.names, (doc_id, text, source, split, language)):
            self._rows[name].append(value)
        self._row_bytes += len(text)
        self.documents += 1
        if len(self._rows["id"]) >= ROW_GROUP_DOCUMENTS or self._row_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _flush(self) -> None:
        if not self._rows["id"]:
            return
        shard = (self.documents - 1) // self.shard_documents  # the shard of the buffered rows
        if shard != self._writer_index:
            if self._writer is not None:
                self._writer.close()
            (self.out_dir / DOCUMENTS).mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.out_dir / shard_name(shard), SCHEMA, compression="zstd")
            self._writer_index = shard
        self._writer.write_table(pa.table(self._rows, schema=SCHEMA))
        self._rows = {name: [] for name in SCHEMA.names}
        self._row_bytes = 0


def set_split(out_dir: Path, shard: int, doc_id: str, split: str) -> None:
    """Rewrite one shard with `doc_id` moved to `split`, batch by batch, then swap it in."""
    path = Path(out_dir) / shard_name(shard)
    tmp = path.with_name(path.name + ".tmp")
    source = pq.ParquetFile(path)
    with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for batch in source.iter_batches(batch_size=ROW_GROUP_DOCUMENTS):
            moved = pc.if_else(pc.equal(batch.column("id"), doc_id), split, batch.column("split"))
            columns = {name: batch.column(name) for name in SCHEMA.names}
            columns["split"] = moved
            writer.write_table(pa.table(columns, schema=SCHEMA))
    source.close()
    os.replace(tmp, path)


def read_documents(
    corpus_dir: Path,
    split: str | None = None,
    columns: Sequence[str] = ("id", "text", "source", "split"),
) -> Iterator[dict]:
    """Documents as dicts of `columns`, in corpus order, only `split` if given; constant memory."""
    for batch in _batches(corpus_dir, split, columns, batch_size=ROW_GROUP_DOCUMENTS):
        yield from batch.to_pylist()


def iter_texts(corpus_dir: Path, split: str | None = None, batch_size: int = 1000) -> Iterator[list[str]]:
    """Lists of `batch_size` texts (the last one shorter), in corpus order: what a tokenizer eats."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    pending: list[str] = []
    for batch in _batches(corpus_dir, split, ("text",), batch_size=batch_size):
        pending.extend(batch.column("text").to_pylist())
        while len(pending) >= batch_size:
            yield pending[:batch_size]
            del pending[:batch_size]
    if pending:
        yield pending


def _batches(corpus_dir: Path, split: str | None, columns: Sequence[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")
    unknown = [c for c in columns if c not in SCHEMA.names]
    if unknown:
        raise ValueError(f"unknown corpus columns {unknown}; the columns are {SCHEMA.names}")
    wanted = list(columns)
    read = wanted if split is None or "split" in wanted else [*wanted, "split"]
    for part in corpus_parts(corpus_dir):
        with pq.ParquetFile(part) as shard:
            for batch in shard.iter_batches(batch_size=batch_size, columns=read):
                if split is not None:
                    batch = batch.filter(pc.equal(batch.column("split"), split))
                if batch.num_rows:
                    yield batch.select(wanted)
