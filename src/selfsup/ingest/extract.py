"""Bytes of one file (or archive member) → its pieces: the reader for its format, chosen by name.

This runs inside a sandboxed worker (see `sandbox`): it never touches the file system, it only
turns bytes into text. Text formats are decoded first (`decode`: BOMs, UTF-8, legacy code pages)
and their mojibake repaired with ftfy (not code: it is kept verbatim); binary formats (PDF,
Office, Parquet, archives) get the bytes. Every failure becomes a reason: `Dropped` and the
decode/read errors carry theirs, `MemoryError` is `memory`, anything else from a parser is
`parse_error: <Exception>: <message>`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from selfsup.config import CorpusConfig
from selfsup.ingest import archive, code, html, jsonl, mail, office, pdf, table, text
from selfsup.ingest.archive import Budget
from selfsup.ingest.decode import NotText, decode_bytes
from selfsup.ingest.text import Dropped, Piece

# format name → reader; "text" formats receive decoded text, the others bytes.
TEXT_READERS: dict[str, Callable] = {
    "text": text.pieces, "html": html.pieces, "jsonl": jsonl.pieces, "csv": table.csv_pieces, "code": code.pieces,
}  # fmt: skip
BYTES_READERS: dict[str, Callable] = {
    "pdf": pdf.pieces, "docx": office.docx_pieces, "pptx": office.pptx_pieces, "eml": mail.eml_pieces,
    "mbox": mail.mbox_pieces, "parquet": table.parquet_pieces,
}  # fmt: skip
ARCHIVES = {"zip": archive.zip_pieces, "tar": archive.tar_pieces}
FORMAT_OF_EXTENSION = {
    ".html": "html", ".htm": "html", ".jsonl": "jsonl", ".csv": "csv", ".pdf": "pdf", ".docx": "docx",
    ".pptx": "pptx", ".eml": "eml", ".mbox": "mbox", ".parquet": "parquet", ".zip": "zip", ".tar": "tar",
    ".tgz": "tar", ".tar.gz": "tar", ".tar.bz2": "tar", ".tar.xz": "tar",
}  # fmt: skip
# Formats whose file holds many documents: the file's audit line is `ingested` if any piece is,
# and every piece that is not gets a line of its own.
CONTAINERS = {"jsonl", "csv", "parquet", "mbox", "zip", "tar"}
_COMPOUND = (".tar.gz", ".tar.bz2", ".tar.xz")


def extension_of(name: str) -> str:
    lower = name.lower()
    for compound in _COMPOUND:
        if lower.endswith(compound):
            return compound
    return os.path.splitext(lower)[1]


def format_of(name: str, cfg: CorpusConfig) -> str | None:
    """The reader for a file name under `cfg`, or None (`unsupported_type`)."""
    extension = extension_of(name)
    if extension in cfg.readers:
        return "custom"
    if extension in cfg.code_extensions:
        return "code"
    if extension not in cfg.extensions:
        return None
    return FORMAT_OF_EXTENSION.get(extension, "text")


@dataclass(slots=True)
class Extraction:
    pieces: list[Piece]
    encodings: list[str] = field(default_factory=list)  # one per decoded text (file or member)
    mojibake_fixed: int = 0


def extract(data: bytes, name: str, cfg: CorpusConfig, fmt: str | None = None) -> Extraction:
    """All pieces of a file; raises `Dropped` / `NotText` / `MemoryError` / parser errors for the file."""
    out = Extraction([])
    fmt = fmt or format_of(name, cfg)
    budget = Budget(cfg.max_archive_bytes)
    out.pieces = _extract(data, name, cfg, fmt, budget, 0, out)
    return out


def _extract(data: bytes, name: str, cfg: CorpusConfig, fmt: str | None, budget: Budget, depth: int, out: Extraction) -> list[Piece]:
    if fmt is None:
        raise Dropped("unsupported_type")
    if fmt == "custom":
        reader = _custom_reader(cfg.readers[extension_of(name)])
        return [_as_piece(p, fmt) for p in reader(data, cfg)]
    if fmt in ARCHIVES:
        if depth > cfg.max_archive_depth:
            raise Dropped(f"archive_limit: archives nested deeper than {cfg.max_archive_depth}")

        def member(member_data: bytes, member_name: str, c: CorpusConfig, b: Budget, d: int) -> list[Piece]:
            return _extract_member(member_data, member_name, c, b, d, out)

        return list(ARCHIVES[fmt](data, cfg, budget, depth, member))
    if fmt in BYTES_READERS:
        return [p._replace(format=fmt) for p in BYTES_READERS[fmt](data, cfg)]
    decoded, encoding = decode_bytes(data)
    out.encodings.append(encoding)
    if cfg.fix_mojibake and fmt != "code":
        from selfsup.clean.mojibake import fix_mojibake

        fixed = fix_mojibake(decoded)
        out.mojibake_fixed += fixed != decoded
        decoded = fixed
    return [p._replace(format=fmt) for p in TEXT_READERS[fmt](decoded, cfg)]


def _extract_member(data: bytes, name: str, cfg: CorpusConfig, budget: Budget, depth: int, out: Extraction) -> list[Piece]:
    """A member's pieces; its failure is its own piece, not the archive's."""
    try:
        return _extract(data, name, cfg, format_of(name, cfg), budget, depth, out)
    except Exception as exc:  # noqa: BLE001 (a member must not fail its archive)
        return [Piece("", None, reason_of(exc))]


def reason_of(exc: BaseException) -> str:
    """The audit reason for an exception raised while reading a file."""
    if isinstance(exc, (Dropped, NotText)):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, RecursionError):
        return f"parse_error: RecursionError: {exc}"
    return f"parse_error: {exc.__class__.__name__}: {exc}"[:500]


def _custom_reader(spec: str) -> Callable[[bytes, CorpusConfig], Iterable]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def _as_piece(item: object, fmt: str) -> Piece:
    if isinstance(item, Piece):
        return item._replace(format=fmt)
    if isinstance(item, str):
        return Piece("", item, None, fmt)
    where, value = item  # (where, text)
    return Piece(where, value, None, fmt)
