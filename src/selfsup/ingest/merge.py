"""Merge: the extracted shards → the corpus, deciding what needs the whole corpus at once.

    extracted/shard-*-of-N.parquet ─(merged by walk position)─▶ exact + near de-duplication
    → split → documents/part-*.parquet + audit.jsonl → manifest.json, last

The rows of all N shards are merged in the order of the whole walk, so "the first occurrence"
of a duplicate, the shards' contents and the audit are exactly those of a single-machine run.
Which layout is merged: the N of the most recently finished shard; all N shards must be there,
must have walked the same listing and be extracted with this merge's settings. After a merge,
shard files of other layouts are removed (they were only kept as a cache).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.audit.canaries import CanaryRequest, plant_canaries
from selfsup.config import CorpusConfig
from selfsup.dedup import ExactDedup
from selfsup.dedup.minhash import NearDuplicateIndex
from selfsup.errors import StageFailure, UsageError
from selfsup.ingest.audit import AUDIT, AuditLog
from selfsup.ingest.corpus import DOCUMENTS, ShardWriter, corpus_parts, set_split
from selfsup.ingest.discover import display_path
from selfsup.ingest.extracted import EXTRACTED, ShardFile, committed_shards, iter_rows, remove_shard, to_result
from selfsup.ingest.fingerprint import extraction_key, fingerprint_of
from selfsup.ingest.process import Doc
from selfsup.ingest.split import SplitTally, split_of
from selfsup.manifest import MANIFEST, write_manifest


def merge_shards(
    out_dir: Path, cfg: CorpusConfig, fingerprint: str | None = None, *, count: int | None = None, started: float | None = None,
    canaries: CanaryRequest | None = None,
) -> dict[str, Any]:
    """Write the corpus in `out_dir` from `out_dir/extracted/`; return the manifest.

    `count` picks the layout (default: the newest). `fingerprint` overrides the one computed from
    the settings and the shards' listing digest (they are equal when the caller walked the same
    folder). `started` is when the whole ingest began (for `seconds`).
    """
    merge_started = time.monotonic()
    out_dir = Path(out_dir)
    shards = _layout(out_dir, cfg, count)
    info = shards[0].info
    try:
        _clear_stale(out_dir)
        run = _Merge(cfg, out_dir)
        try:
            for row in heapq.merge(*(iter_rows(s.rows) for s in shards), key=lambda r: r["seq"]):
                run.record(row)
        finally:
            run.close()
        move = run.tally.correction(cfg.validation_fraction)
        if move is not None:
            set_split(out_dir, move[2], move[0], move[1])
        planted = plant_canaries(out_dir, canaries) if canaries is not None and run.writer.documents else None
    except OSError as exc:
        raise StageFailure(f"could not write the corpus in {display_path(out_dir)}: {exc.strerror or exc}") from exc
    files_seen = sum(s.info["files"] for s in shards)
    if run.audit.files != files_seen:
        raise StageFailure(f"{display_path(out_dir / EXTRACTED)} is damaged ({run.audit.files} of {files_seen} files read back); run the ingest again")
    if run.writer.documents == 0:
        raise UsageError(_nothing_kept(run.audit, out_dir, cfg))
    for stale in committed_shards(out_dir / EXTRACTED):
        if stale.count != shards[0].count:
            remove_shard(out_dir / EXTRACTED, stale.index, stale.count)
    now = time.monotonic()
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
        "duplicates": run.duplicates,
        "near_duplicates": run.near_duplicates,
        "pii": dict(sorted(run.pii.items())),
        "languages": dict(run.languages.most_common()),
        "formats": {k: dict(v) for k, v in sorted(run.formats.items())},
        "extraction_shards": len(shards),
        "files_extracted": sum(s.info["extracted"] for s in shards),
        "files_reused": sum(s.info["reused"] for s in shards),
        "workers": max(s.info["workers"] for s in shards),
        "worker_restarts": sum(s.info["worker_restarts"] for s in shards),
        "workers_started": sum(s.info["workers_started"] for s in shards),
        "extract_seconds": round(sum(s.info["seconds"] for s in shards), 3),
        "merge_seconds": round(now - merge_started, 3),
        "seconds": round(now - (merge_started if started is None else started), 3),
        "sources": info["sources"],
    }
    if planted is not None:
        extra["canaries"] = planted
    fingerprint = fingerprint or fingerprint_of(cfg, info["listing"])
    return write_manifest(out_dir, stage="ingest", fingerprint=fingerprint, extra=extra)


def _layout(out_dir: Path, cfg: CorpusConfig, count: int | None) -> list[ShardFile]:
    """The N shards to merge, checked to belong together; UsageError saying what to run otherwise."""
    folder = out_dir / EXTRACTED
    found = committed_shards(folder)
    if not found:
        raise UsageError(
            f"nothing to merge in {display_path(folder)}; run `selfsup ingest SOURCE... --shard i/N --out {display_path(out_dir)}` "
            "for every i first"
        )
    if count is None:
        count = max(found, key=lambda s: s.info.get("finished", 0)).count
    shards = {s.index: s for s in found if s.count == count}
    missing = [i for i in range(count) if i not in shards]
    if missing:
        listed = ", ".join(f"{i}/{count}" for i in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise UsageError(f"--merge needs all {count} shards in {display_path(folder)}; missing {listed}: run `selfsup ingest SOURCE... --shard i/{count}` for them")
    ordered = [shards[i] for i in range(count)]
    if len({s.info.get("listing") for s in ordered}) > 1:
        raise UsageError("the shards walked different source folders (files changed, or other sources, between shard runs); run every shard again")
    if any(s.info.get("extraction") != extraction_key(cfg) for s in ordered):
        raise UsageError("the shards were extracted with other [corpus] settings than this merge's; give the shards and the merge the same --config")
    return ordered


class _Merge:
    """The state of one merge: the open outputs, the de-duplication indexes and the running counts."""

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
        self.characters = self.bytes = self.duplicates = self.near_duplicates = self.mojibake_fixed = 0

    def close(self) -> None:
        self.writer.close()
        self.audit.close()

    def record(self, row: dict[str, Any]) -> None:
        """Exactly one audit line for the file, plus one per piece of a container not ingested."""
        path, result = row["path"], to_result(row)
        if row["bytes"] is not None:  # the file was read: it counts for its format
            self._count_format(row["fmt"], "files", 1)
            self._count_format(row["fmt"], "bytes", row["bytes"])
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

    def _count_format(self, fmt: str, key: str, n: int) -> None:
        self.formats.setdefault(fmt, Counter())[key] += n

    def _keep(self, doc: Doc, source: str) -> tuple[str, str | None, str | None]:
        """De-duplicate and store one processed document: (status, reason, doc_id)."""
        if doc.reason is not None or doc.text is None or doc.doc_id is None:
            return "dropped", doc.reason or "parse_error", None
        original = self.dedup.original_of(doc.doc_id, remember=False)
        if original is not None:
            kind = "duplicate_of" if original == doc.doc_id else "near_duplicate_of"
            self.duplicates += 1  # an exact copy (of a kept document, or of a near-duplicate)
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


def _clear_stale(out_dir: Path) -> None:
    """Remove a previous merge's output; the manifest goes first, so a crash leaves no stale trust."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for stale in [*out_dir.glob("part-*.parquet"), *out_dir.glob(f"{DOCUMENTS}/part-*.parquet"), *out_dir.glob("*.tmp"),
                  *out_dir.glob(f"{DOCUMENTS}/*.tmp"), out_dir / AUDIT]:
        stale.unlink(missing_ok=True)


def _nothing_kept(audit: AuditLog, out_dir: Path, cfg: CorpusConfig) -> str:
    reasons = ", ".join(f"{n} {r}" for r, n in audit.file_reasons.most_common())
    return (
        f"no usable text in the sources: {audit.files} files seen, all dropped ({reasons}); "
        f"see {display_path(out_dir / AUDIT)}; supported extensions: {' '.join(cfg.extensions)}"
    )
