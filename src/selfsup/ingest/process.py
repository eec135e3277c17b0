"""One file's whole per-document work, as it runs in a worker: bytes → clean documents.

extract (format reader) → normalise → too short / quality rules → language → PII → id →
MinHash signature. Only what needs the whole corpus (exact and near de-duplication, the split,
writing) is left to the parent, so the parent stays light and the work spreads over the cores.
The result holds plain values only (it crosses a process boundary).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from selfsup.clean import normalise_text
from selfsup.clean.filters import quality_reason
from selfsup.clean.language import detect_language
from selfsup.clean.pii import redact
from selfsup.config import CorpusConfig
from selfsup.dedup import document_id
from selfsup.dedup.minhash import minhash_signature
from selfsup.ingest.extract import CONTAINERS, extract, reason_of
from selfsup.ingest.text import Piece


@dataclass(slots=True)
class Doc:
    """One piece, processed: kept (`text`, `doc_id`, ...) or dropped (`reason`)."""

    where: str
    reason: str | None = None
    text: str | None = None
    doc_id: str | None = None
    language: str | None = None
    format: str = ""
    pii: dict[str, int] = field(default_factory=dict)
    signature: bytes | None = None  # MinHash, uint64 little-endian


@dataclass(slots=True)
class FileResult:
    """What became of one file: its documents, or the reason the whole file was dropped."""

    docs: list[Doc] = field(default_factory=list)
    reason: str | None = None
    container: bool = False
    encodings: list[str] = field(default_factory=list)
    mojibake_fixed: int = 0
    reusable: bool = True  # False for a timeout or a crashed worker: tried again on the next run


def warm_up(cfg: CorpusConfig) -> None:
    """Load what every job needs (the language model) before a worker takes its first job."""
    detect_language("warm up")


def failed(reason: str) -> FileResult:
    return FileResult(reason=reason)


def process_file(cfg: CorpusConfig, job: tuple[str, str, bytes]) -> FileResult:
    """The documents of one file (`job` = (name, format, data)); never raises for a bad file."""
    name, fmt, data = job
    try:
        extraction = extract(data, name, cfg, fmt)
    except Exception as exc:  # noqa: BLE001 (the file's own problem; MemoryError included)
        return failed(reason_of(exc))
    del data
    result = FileResult(container=fmt in CONTAINERS, encodings=extraction.encodings, mojibake_fixed=extraction.mojibake_fixed)
    for piece in extraction.pieces:
        try:
            result.docs.append(process_piece(piece, cfg))
        except Exception as exc:  # noqa: BLE001
            result.docs.append(Doc(piece.where, reason=reason_of(exc), format=piece.format))
    if not result.container and len(result.docs) != 1:  # a single-document reader gave 0 or many
        joined = "\n\n".join(d.text or "" for d in result.docs)
        return FileResult([process_piece(Piece("", joined, None, fmt), cfg)], encodings=result.encodings)
    return result


def process_piece(piece: Piece, cfg: CorpusConfig) -> Doc:
    doc = Doc(piece.where, format=piece.format)
    if piece.text is None:
        doc.reason = piece.error or "parse_error"
        return doc
    text = normalise_text(piece.text)
    code = piece.format == "code"
    if not text:
        doc.reason = "empty"
    elif len(text) < cfg.min_chars:
        doc.reason = "too_short"
    else:
        doc.reason = quality_reason(text, cfg, code=code)
    if doc.reason is not None:
        return doc
    if not code:
        doc.language = detect_language(text)
        if cfg.languages and doc.language not in cfg.languages:
            doc.reason = "filtered:language"
            return doc
    if cfg.pii:
        text, counts = redact(text)
        doc.pii = dict(counts)
    doc.text = text
    doc.doc_id = document_id(text)
    if cfg.near_dedup:
        signature = minhash_signature(text, cfg.minhash_permutations)
        doc.signature = None if signature is None else signature.astype("<u8").tobytes()
    return doc
