"""JSON Lines (.jsonl): one document per line, the text in `cfg.jsonl_text_field`.

A line that is not a JSON object with a string in that field is a `parse_error` piece (with the
detail), and the file's other lines are still read. Blank lines are not records and are skipped.
Line numbers count from 1, as an editor shows them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Piece


def pieces(text: str, cfg: CorpusConfig) -> Iterator[Piece]:
    """One piece per non-blank line."""
    field = cfg.jsonl_text_field
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"#line{number}"
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            yield Piece(where, None, f"parse_error: not valid JSON ({detail})")
            continue
        if not isinstance(record, dict):
            yield Piece(where, None, f"parse_error: the line is {_json_type(record)}, not an object")
        elif field not in record:
            yield Piece(where, None, f"parse_error: no field '{field}'")
        elif not isinstance(record[field], str):
            yield Piece(where, None, f"parse_error: field '{field}' is {_json_type(record[field])}, not a string")
        else:
            yield Piece(where, record[field])


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {list: "an array", dict: "an object", str: "a string"}.get(type(value), "a value")
