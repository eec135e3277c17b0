"""Tables: CSV and Parquet, one document per row (`path#rowN`, rows counted from 1 after the header).

The row's text is its `[corpus] text_columns` values, non-empty ones joined by a blank line. A
table without any of those columns is a `parse_error` naming the columns it has; a row whose
columns are all empty is an `empty` piece.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Dropped, Piece


def csv_pieces(text: str, cfg: CorpusConfig) -> Iterator[Piece]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the file size cap already bounds a field
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = _columns(reader.fieldnames or [], cfg)
    for number, row in enumerate(reader, start=1):
        yield _row_piece(number, [row.get(c) for c in columns])


def parquet_pieces(data: bytes, cfg: CorpusConfig) -> Iterator[Piece]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(io.BytesIO(data))
    columns = _columns(table.schema_arrow.names, cfg)
    number = 0
    for batch in table.iter_batches(batch_size=1000, columns=columns):
        values = [batch.column(c).to_pylist() for c in columns]
        for row in zip(*values):
            number += 1
            yield _row_piece(number, [v if isinstance(v, str) else (None if v is None else str(v)) for v in row])


def _columns(names: list[str], cfg: CorpusConfig) -> list[str]:
    columns = [c for c in cfg.text_columns if c in names]
    if not columns:
        wanted = ", ".join(cfg.text_columns)
        raise Dropped(f"parse_error: no column {wanted} (columns: {', '.join(map(str, names))[:200]}); set [corpus] text_columns")
    return columns


def _row_piece(number: int, values: list[str | None]) -> Piece:
    text = "\n\n".join(v for v in values if v and v.strip())
    return Piece(f"#row{number}", text)
