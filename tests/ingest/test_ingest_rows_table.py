"""Extraction rows → Arrow: the column-by-column builder makes exactly the table `from_pylist` makes."""

import pyarrow as pa

from selfsup.ingest.extracted import SCHEMA, rows_table


def test_rows_table_equals_from_pylist():
    """Every column, nulls, empty and multi-document rows included: the same table (values and schema)."""
    doc = {"where": "", "reason": None, "text": "Pump manual.", "doc_id": "ab12", "language": "en", "format": "text",
           "pii": '{"email": 1}', "signature": b"\x01" * 16}  # fmt: skip
    dropped = {"where": "#line2", "reason": "too_short", "text": None, "doc_id": None, "language": None, "format": "jsonl",
               "pii": None, "signature": None}  # fmt: skip
    rows = [
        {"seq": 0, "path": "a.txt", "fmt": "text", "key": "k:text", "bytes": 12, "reason": None, "container": False,
         "encodings": ["utf-8"], "mojibake_fixed": 0, "docs": [doc]},
        {"seq": 3, "path": "b.bin", "fmt": None, "key": None, "bytes": None, "reason": "unsupported_type", "container": False,
         "encodings": [], "mojibake_fixed": 0, "docs": []},
        {"seq": 4, "path": "c.jsonl", "fmt": "jsonl", "key": "k2:jsonl", "bytes": 99, "reason": None, "container": True,
         "encodings": ["utf-8", "cp1252"], "mojibake_fixed": 1, "docs": [doc, dropped, doc]},
    ]  # fmt: skip
    for chosen in (rows, rows[1:2], rows[::-1]):
        built = rows_table(chosen)
        assert built.equals(pa.Table.from_pylist(chosen, schema=SCHEMA))
        assert built.to_pylist() == chosen
