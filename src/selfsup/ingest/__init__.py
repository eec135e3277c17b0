"""ingest: files and folders → a corpus of documents, with every input accounted for.

    walk (discover) → read, capped (read) ─▶ sandboxed workers (sandbox, process):
        extract per format (extract: text, html, jsonl, csv, code, pdf, office, mail, table,
        archive) → normalise, quality rules, language, PII (clean) → id, MinHash (dedup)
    ─▶ in walk order: exact + near dedup (dedup) → split (split) → Parquet shards (corpus)
       + audit.jsonl (audit) → manifest.json, last

Each file ends as exactly one audit line: `ingested`, `duplicate` (of the first occurrence, in
sorted walk order) or `dropped` with a reason; a file holding many documents (JSONL, CSV,
Parquet, mbox, archives) also has a line for each of its pieces that was not ingested. A broken
or hostile file never raises out of `ingest_sources`, not even one that hangs, crashes or
exhausts memory in its parser (it costs its worker, which is replaced); only a `UsageError`
does (a source that does not exist, an empty folder, or no usable text at all), and in the last
case after the audit is written, so it can be read. The output is the same for any number of
workers: results are put back in walk order before anything is decided or written.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.config import CorpusConfig, settings_hash
from selfsup.dedup import ExactDedup
from selfsup.dedup.minhash import NearDuplicateIndex
from selfsup.errors import StageFailure, UsageError
from selfsup.ingest.audit import AUDIT, AuditLog
from selfsup.ingest.corpus import ShardWriter, corpus_parts, iter_texts, read_documents, set_split
from selfsup.ingest.discover import Entry, check_sources, display_path, walk_sources
from selfsup.ingest.extract import format_of
from selfsup.ingest.process import Doc, FileResult, failed, process_file, warm_up
from selfsup.ingest.read import Unreadable, read_capped
from selfsup.ingest.sandbox import Sandbox, default_workers
from selfsup.ingest.split import SplitTally, split_of
from selfsup.manifest import MANIFEST, write_manifest

__all__ = ["ingest_sources", "source_fingerprint", "read_documents", "iter_texts", "corpus_parts", "AUDIT"]

# Bump when reading, decoding or normalising changes: old corpora then no longer count as done.
INGEST_VERSION = 2
# Settings that change how fast, not what: left out of the fingerprint.
_SPEED_ONLY = {"sources", "workers"}


def source_fingerprint(sources: Sequence[Path], cfg: CorpusConfig, exclude: Iterable[Path] = ()) -> str:
    """Hash of the settings and of the input listing (path, size, mtime_ns): no file is read.

    Changes when a file is added, removed, renamed, resized or touched, or when a setting of
    the [corpus] section changes (`sources` there is ignored: the `sources` argument counts).
    """
    listing = [
        (e.source_index, e.rel, e.size, e.mtime_ns, e.problem)
        for e in walk_sources(sources, cfg.follow_symlinks, exclude)
    ]
    settings = cfg.model_dump(mode="json", exclude=_SPEED_ONLY)
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
            entries = _with_progress(walk_sources(sources, cfg.follow_symlinks, excluded), progress)
            for entry, fmt, result in run.results(entries):
                run.record(entry, fmt, result)
        finally:
            run.close()
        move = run.tally.correction(cfg.validation_fraction)
        if move is not None:
            set_split(out_dir, move[2], move[0], move[1])
    except RuntimeError as exc:  # the sandbox could not start a worker at all
        raise StageFailure(f"ingest: {exc}; try [corpus] workers = 0 to extract in-process") from exc
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
        "mojibake_fixed": run.mojibake_fixed,
        "near_duplicates": run.near_duplicates,
        "pii": dict(sorted(run.pii.items())),
        "languages": dict(run.languages.most_common()),
        "formats": {k: dict(v) for k, v in sorted(run.formats.items())},
        "workers": run.workers,
        "worker_restarts": run.restarts,
        "workers_started": run.workers_started,
        "seconds": round(time.monotonic() - run.started, 3),
        "sources": [display_path(s) for s in sources],
    }
    return write_manifest(out_dir, stage="ingest", fingerprint=fingerprint, extra=extra)


class _Run:
    """The state of one ingest: the open outputs, the de-duplication indexes and the running counts."""

    def __init__(self, cfg: CorpusConfig, out_dir: Path) -> None:
        self.cfg = cfg
        self.audit = AuditLog(out_dir / AUDIT)
        self.writer = ShardWriter(out_dir, cfg.shard_documents)
        self.dedup = ExactDedup()
        self.near = NearDuplicateIndex(cfg.minhash_permutations, cfg.near_dedup_threshold) if cfg.near_dedup else None
        self.tally = SplitTally()
        self.encodings: Counter[str] = Counter()
        self.pii: Counter[str] = Counter()
        self.languages: Counter[str] = Counter()
        self.formats: dict[str, Counter[str]] = {}
        self.characters = self.bytes = self.near_duplicates = self.mojibake_fixed = self.restarts = self.workers_started = 0
        self.workers = default_workers() if cfg.workers is None else cfg.workers
        self.started = time.monotonic()

    def close(self) -> None:
        self.writer.close()
        self.audit.close()

    def results(self, entries: Iterable[Entry]) -> Iterator[tuple[Entry, str | None, FileResult]]:
        """(entry, format, result) in walk order; the extraction runs in the sandbox (or here, workers=0)."""
        pending: list[tuple[Entry, str | None]] = []

        def jobs() -> Iterator[tuple[Any, Any]]:
            for entry in entries:
                fmt, job, ready = self._prepare(entry)
                pending.append((entry, fmt))
                yield job, ready

        if self.workers == 0:  # in this process: no time or memory limit (debugging, tests)
            for job, ready in jobs():
                entry, fmt = pending.pop(0)
                yield entry, fmt, ready if job is None else process_file(self.cfg, job)
            return
        # A window of 2 jobs per worker keeps every worker busy while the parent reads ahead.
        sandbox = Sandbox(
            process_file, self.cfg, _on_failure, workers=self.workers, timeout=self.cfg.timeout_seconds,
            memory_mb=self.cfg.memory_mb, window=4 * self.workers, prepare=warm_up,
        )  # fmt: skip
        with sandbox:
            for result in sandbox.map(jobs()):
                entry, fmt = pending.pop(0)
                yield entry, fmt, result
        self.restarts, self.workers_started = sandbox.restarts, sandbox.started

    def _prepare(self, entry: Entry) -> tuple[str | None, Any, FileResult | None]:
        """(format, job for a worker, None), or (format, None, the result) when the parent already knows."""
        cfg = self.cfg
        fmt = format_of(entry.path.name, cfg)
        if entry.problem is not None:
            return fmt, None, failed(entry.problem)
        if fmt is None:
            return fmt, None, failed("unsupported_type")
        if entry.size > cfg.max_file_bytes:  # from the walk's stat: the file is never opened
            return fmt, None, failed("too_large")
        try:  # a source named explicitly may be a symlink (the user asked for it); others only if followed
            data = read_capped(entry.path, cfg.max_file_bytes, follow_symlinks=cfg.follow_symlinks or entry.rel == "")
        except Unreadable as exc:
            return fmt, None, failed(exc.reason)
        self._count_format(fmt, "files", 1)
        self._count_format(fmt, "bytes", len(data))
        return fmt, (entry.path.name, fmt, data), None

    def _count_format(self, fmt: str, key: str, n: int) -> None:
        self.formats.setdefault(fmt, Counter())[key] += n

    def record(self, entry: Entry, fmt: str | None, result: FileResult) -> None:
        """Exactly one audit line for the file, plus one per piece of a container not ingested."""
        path = entry.display
        self.encodings.update(result.encodings)
        self.mojibake_fixed += result.mojibake_fixed
        if result.reason is not None:
            self.audit.write(path, "dropped", result.reason)
            return
        if not result.container:  # one document per file: its outcome is the file's line
            (doc,) = result.docs
            self.audit.write(path, *self._keep(doc, path))
            return
        outcomes = [(path + d.where, *self._keep(d, path + d.where)) for d in result.docs]
        if any(status == "ingested" for _, status, _, _ in outcomes):
            self.audit.write(path, "ingested")
        else:
            self.audit.write(path, "dropped", "no_usable_records" if result.docs else "empty")
        for where, status, reason, doc_id in outcomes:
            if status != "ingested":
                self.audit.write(where, status, reason, doc_id, file=False)

    def _keep(self, doc: Doc, source: str) -> tuple[str, str | None, str | None]:
        """De-duplicate and store one processed document: (status, reason, doc_id)."""
        if doc.reason is not None or doc.text is None or doc.doc_id is None:
            return "dropped", doc.reason or "parse_error", None
        original = self.dedup.original_of(doc.doc_id, remember=False)
        if original is not None:
            kind = "duplicate_of" if original == doc.doc_id else "near_duplicate_of"
            return "duplicate", f"{kind}:{original}", original
        signature = None if doc.signature is None else np.frombuffer(doc.signature, dtype="<u8")
        if self.near is not None and signature is not None:
            near = self.near.original_of(signature)
            if near is not None:
                self.dedup.alias(doc.doc_id, near[0])  # a later exact copy points at the same original
                self.near_duplicates += 1
                return "duplicate", f"near_duplicate_of:{near[0]}", near[0]
            self.near.add(signature, doc.doc_id)
        self.dedup.add(doc.doc_id)
        split = split_of(doc.doc_id, self.cfg.validation_fraction)
        self.tally.add(doc.doc_id, split, self.writer.shard_of_next)
        self.writer.add(doc.doc_id, doc.text, source, split, doc.language)
        self.characters += len(doc.text)
        self.bytes += len(doc.text.encode("utf-8"))
        self.pii.update(doc.pii)
        if doc.language:
            self.languages[doc.language] += 1
        self._count_format(doc.format or "text", "documents", 1)
        return "ingested", None, doc.doc_id


def _on_failure(job: tuple[str, str, bytes], reason: str) -> FileResult:
    """The result of a file whose worker timed out or died."""
    return failed(reason)


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
