"""ingest: files and folders → a corpus of documents, with every input accounted for.

    walk (discover) → read, capped (read) → decode (decode) → extract per format (text, html,
    jsonl) → normalise (clean) → drop empty / too short → exact dedup (dedup) → split (split)
    → Parquet shards (corpus) + audit.jsonl (audit) → manifest.json, last

Each file ends as exactly one audit line: `ingested`, `duplicate` (of the first occurrence, in
sorted walk order) or `dropped` with a reason. A broken or hostile file never raises out of
`ingest_sources`; only a `UsageError` does (a source that does not exist, an empty folder, or
no usable text at all), and in the last case after the audit is written, so it can be read.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from selfsup.clean import normalise_text
from selfsup.config import CorpusConfig, settings_hash
from selfsup.dedup import ExactDedup, document_id
from selfsup.errors import StageFailure, UsageError
from selfsup.ingest import html, jsonl, text
from selfsup.ingest.audit import AUDIT, AuditLog
from selfsup.ingest.corpus import ShardWriter, corpus_parts, iter_texts, read_documents, set_split
from selfsup.ingest.decode import NotText, decode_bytes
from selfsup.ingest.discover import Entry, check_sources, display_path, walk_sources
from selfsup.ingest.read import Unreadable, read_capped
from selfsup.ingest.split import SplitTally, split_of
from selfsup.ingest.text import Piece
from selfsup.manifest import MANIFEST, write_manifest

__all__ = ["ingest_sources", "source_fingerprint", "read_documents", "iter_texts", "corpus_parts", "AUDIT"]

# Bump when reading, decoding or normalising changes: old corpora then no longer count as done.
INGEST_VERSION = 1
# Extensions with a reader of their own; any other extension listed in cfg.extensions is plain text.
READERS = {".html": html, ".htm": html, ".jsonl": jsonl}


def source_fingerprint(sources: Sequence[Path], cfg: CorpusConfig, exclude: Iterable[Path] = ()) -> str:
    """Hash of the settings and of the input listing (path, size, mtime_ns): no file is read.

    Changes when a file is added, removed, renamed, resized or touched, or when a setting of
    the [corpus] section changes (`sources` there is ignored: the `sources` argument counts).
    """
    listing = [
        (e.source_index, e.rel, e.size, e.mtime_ns, e.problem)
        for e in walk_sources(sources, cfg.follow_symlinks, exclude)
    ]
    settings = cfg.model_dump(mode="json", exclude={"sources"})
    return settings_hash("ingest", INGEST_VERSION, settings, [display_path(s) for s in sources], listing)


def ingest_sources(
    sources: list[Path],
    out_dir: Path,
    cfg: CorpusConfig,
    fingerprint: str | None = None,
    *,
    exclude: Iterable[Path] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Ingest `sources` (files and folders) into `out_dir`; return the manifest.

    Old output in `out_dir` (manifest first, then shards and audit) is removed before anything
    is written, and the manifest is written last. `out_dir` itself, and the `exclude` folders,
    are not walked even when they lie inside a source. `progress` shows a rich progress bar.
    """
    sources = check_sources(sources)
    out_dir = Path(out_dir)
    for source in sources:
        if os.path.isdir(out_dir) and os.path.samefile(source, out_dir):
            raise UsageError(f"source {display_path(source)} is the output folder; write the corpus somewhere else (--out)")
    excluded = [out_dir, *exclude]
    if fingerprint is None:
        fingerprint = source_fingerprint(sources, cfg, exclude=excluded)
    try:
        _clear_stale(out_dir)
        run = _Run(cfg, out_dir)
        try:
            for entry in _with_progress(walk_sources(sources, cfg.follow_symlinks, excluded), progress):
                run.ingest_file(entry)
        finally:
            run.close()
        move = run.tally.correction(cfg.validation_fraction)
        if move is not None:
            set_split(out_dir, move[2], move[0], move[1])
    except OSError as exc:  # reading errors are audit lines; this is the output side (disk full, ...)
        raise StageFailure(f"could not write the corpus in {display_path(out_dir)}: {exc.strerror or exc}") from exc

    if run.writer.documents == 0:
        raise UsageError(_nothing_kept(run.audit, out_dir, cfg))
    extra = {
        "documents": run.writer.documents,
        "train_documents": run.tally.train,
        "validation_documents": run.tally.validation,
        "characters": run.characters,
        "bytes": run.bytes,
        "files_seen": run.audit.files,
        "shards": len(corpus_parts(out_dir)),
        "audit": dict(run.audit.by_status),
        "dropped": dict(run.audit.by_reason),
        "encodings": dict(run.encodings),
        "sources": [display_path(s) for s in sources],
    }
    return write_manifest(out_dir, stage="ingest", fingerprint=fingerprint, extra=extra)


class _Run:
    """The state of one ingest: the open outputs and the running counts."""

    def __init__(self, cfg: CorpusConfig, out_dir: Path) -> None:
        self.cfg = cfg
        self.audit = AuditLog(out_dir / AUDIT)
        self.writer = ShardWriter(out_dir, cfg.shard_documents)
        self.dedup = ExactDedup()
        self.tally = SplitTally()
        self.encodings: Counter[str] = Counter()
        self.characters = 0
        self.bytes = 0

    def close(self) -> None:
        self.writer.close()
        self.audit.close()

    def ingest_file(self, entry: Entry) -> None:
        """Exactly one audit line for the file (plus record lines for a JSONL file)."""
        path = entry.display
        extension = os.path.splitext(entry.path.name)[1].lower()
        reader = READERS.get(extension, text)
        try:
            pieces = self._read(entry, extension, reader)
        except (Unreadable, NotText) as exc:
            self.audit.write(path, "dropped", exc.reason)
            return
        except Exception as exc:  # a reader choking on a hostile file: that file's problem only
            self.audit.write(path, "dropped", f"parse_error: {exc.__class__.__name__}: {exc}"[:500])
            return

        if reader is not jsonl:  # one document per file: its outcome is the file's line
            (piece,) = pieces
            self.audit.write(path, *self._keep(piece.text, path))
            return
        outcomes = [(path + p.where, *self._keep(p.text, path + p.where, p.error)) for p in pieces]
        if any(status == "ingested" for _, status, _, _ in outcomes):
            self.audit.write(path, "ingested")
        else:
            self.audit.write(path, "dropped", "no_usable_records" if pieces else "empty")
        for where, status, reason, doc_id in outcomes:
            if status != "ingested":
                self.audit.write(where, status, reason, doc_id, file=False)

    def _read(self, entry: Entry, extension: str, reader: Any) -> list[Piece]:
        """The file's pieces, or Unreadable / NotText with the audit reason (cheapest checks first)."""
        cfg = self.cfg
        if entry.problem is not None:
            raise Unreadable(entry.problem)
        if extension not in cfg.extensions:
            raise Unreadable("unsupported_type")
        if entry.size > cfg.max_file_bytes:  # from the walk's stat: the file is never opened
            raise Unreadable("too_large")
        # A source named explicitly may be a symlink (the user asked for it); others only if followed.
        data = read_capped(entry.path, cfg.max_file_bytes, follow_symlinks=cfg.follow_symlinks or entry.rel == "")
        decoded, encoding = decode_bytes(data)
        del data
        pieces = list(reader.pieces(decoded, cfg))
        self.encodings[encoding] += 1
        return pieces

    def _keep(self, raw: str | None, source: str, error: str | None = None) -> tuple[str, str | None, str | None]:
        """Normalise, filter, dedup and store one document: (status, reason, doc_id)."""
        if raw is None:
            return "dropped", error or "parse_error", None
        doc = normalise_text(raw)
        if not doc:
            return "dropped", "empty", None
        if len(doc) < self.cfg.min_chars:
            return "dropped", "too_short", None
        doc_id = document_id(doc)
        original = self.dedup.original_of(doc_id)
        if original is not None:
            return "duplicate", f"duplicate_of:{original}", original
        split = split_of(doc_id, self.cfg.validation_fraction)
        self.tally.add(doc_id, split, self.writer.shard_of_next)
        self.writer.add(doc_id, doc, source, split)
        self.characters += len(doc)
        self.bytes += len(doc.encode("utf-8"))
        return "ingested", None, doc_id


def _clear_stale(out_dir: Path) -> None:
    """Remove a previous ingest's output; the manifest goes first, so a crash leaves no stale trust."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"output {display_path(out_dir)} exists and is not a folder; choose another --out") from None
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for stale in [*out_dir.glob("part-*.parquet"), *out_dir.glob("*.tmp"), out_dir / AUDIT]:
        stale.unlink(missing_ok=True)


def _nothing_kept(audit: AuditLog, out_dir: Path, cfg: CorpusConfig) -> str:
    reasons = ", ".join(f"{n} {r}" for r, n in audit.file_reasons.most_common())
    return (
        f"no usable text in the sources: {audit.files} files seen, all dropped ({reasons}); "
        f"see {display_path(out_dir / AUDIT)}; supported extensions: {' '.join(cfg.extensions)}"
    )


def _with_progress(entries: Iterator[Entry], show: bool) -> Iterator[Entry]:
    if not show:
        yield from entries
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("ingest: {task.completed} files"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("ingest", total=None)
        for entry in entries:
            yield entry
            bar.advance(task)
