"""Read the corpus for packing: one pass over a range of rows, documents of both splits together.

Packing reads each document once: a batch holds documents of both splits, and the packer routes
each one to its split's stream. A *range* of rows (global row numbers over all `part-*.parquet`
files, in corpus order) is what a `--shard i/N` piece reads; a single run reads them all. Row
groups outside the range are never decoded (ingest writes groups of at most 1,000 documents), and
the next batch is read in a background thread while the current one is being encoded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq

from selfsup.ingest import corpus_parts

T = TypeVar("T")


def corpus_rows(corpus_dir: Path) -> int:
    """Rows over all corpus parts (both splits), from Parquet metadata alone."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in corpus_parts(corpus_dir))


def slice_rows(rows: int, index: int, count: int) -> range:
    """The global rows of piece `index` of `count`: contiguous, in corpus order, sizes differing by at most one."""
    return range(index * rows // count, (index + 1) * rows // count)


def iter_documents(corpus_dir: Path, rows: range, batch_size: int) -> Iterator[tuple[list[str], list[str]]]:
    """(texts, splits) of the corpus rows in `rows`, in corpus order, at most `batch_size` at a time."""
    texts: list[str] = []
    splits: list[str] = []
    offset = 0
    for part in corpus_parts(corpus_dir):
        if offset >= rows.stop:
            break
        with pq.ParquetFile(part) as shard:
            for group in range(shard.num_row_groups):
                n = shard.metadata.row_group(group).num_rows
                lo, hi = max(rows.start, offset), min(rows.stop, offset + n)
                if lo < hi:
                    table = shard.read_row_group(group, columns=["text", "split"]).slice(lo - offset, hi - lo)
                    texts.extend(table.column("text").to_pylist())
                    splits.extend(table.column("split").to_pylist())
                    while len(texts) >= batch_size:
                        yield texts[:batch_size], splits[:batch_size]
                        del texts[:batch_size], splits[:batch_size]
                offset += n
                if offset >= rows.stop:
                    break
    if texts:
        yield texts, splits


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a background thread up to `depth` ahead (Parquet decoding overlaps encoding).

    An exception in the producer is raised here, in the consumer; a consumer that stops early
    stops the producer at its next item.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(message: tuple[str, object]) -> bool:
        """Hand one message over, unless the consumer has gone; False when it has."""
        while not stop.is_set():
            try:
                handoff.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            offer(("error", exc))

    producer = threading.Thread(target=produce, name="pack-reader", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
