"""ingest: files and folders → a corpus of documents, with every input accounted for.

    walk (discover) → this shard's files → read, capped (read) → sha256: earlier result (cache)
        or sandboxed workers (sandbox, process): extract per format (extract: text, html, jsonl,
        csv, code, pdf, office, mail, table, archive) → normalise, quality rules, language, PII
        (clean) → id, MinHash (dedup)
    ─▶ extracted/shard-i-of-N.parquet (extracted, extract_shard)
    ─▶ merge, in walk order: exact + near dedup (dedup) → split (split) → Parquet shards (corpus)
       + audit.jsonl (audit) → manifest.json, last (merge)

A single-machine run is shard 0 of 1, then the merge (`ingest_sources`); N machines run
`extract_shard` for i = 0..N-1 (`selfsup ingest --shard i/N`), then one `merge_shards`
(`selfsup ingest --merge`): the result is the same. The extracted shards stay in the corpus
folder as the cache of the next run: a file whose bytes did not change is not extracted again.

Each file ends as exactly one audit line: `ingested`, `duplicate` (of the first occurrence, in
sorted walk order) or `dropped` with a reason; a file holding many documents (JSONL, CSV,
Parquet, mbox, archives) also has a line for each of its pieces that was not ingested. A broken
or hostile file never raises out of `ingest_sources`, not even one that hangs, crashes or
exhausts memory in its parser (it costs its worker, which is replaced); only a `UsageError`
does (a source that does not exist, an empty folder, or no usable text at all), and in the last
case after the audit is written, so it can be read. The output is the same for any number of
workers and of shards: results are put back in walk order before anything is decided or written.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selfsup.audit.canaries import CanaryRequest
from selfsup.config import CorpusConfig
from selfsup.ingest.audit import AUDIT
from selfsup.ingest.corpus import corpus_parts, iter_texts, read_documents
from selfsup.ingest.extract_shard import extract_shard, parse_shard
from selfsup.ingest.fingerprint import source_fingerprint
from selfsup.ingest.merge import merge_shards

__all__ = [
    "ingest_sources", "extract_shard", "merge_shards", "parse_shard", "source_fingerprint",
    "read_documents", "iter_texts", "corpus_parts", "AUDIT",
]  # fmt: skip


def ingest_sources(
    sources: list[Path],
    out_dir: Path,
    cfg: CorpusConfig,
    fingerprint: str | None = None,
    *,
    exclude: Iterable[Path] = (),
    progress: bool = False,
    reuse: bool = True,
    canaries: CanaryRequest | None = None,
) -> dict[str, Any]:
    """Ingest `sources` (files and folders) into `out_dir`; return the manifest.

    Old output in `out_dir` (manifest first, then shards and audit) is replaced, and the manifest
    is written last; earlier extraction results there are reused for unchanged files. `out_dir`
    itself, and the `exclude` folders, are not walked even when they lie inside a source.
    `progress` shows a rich progress bar; `reuse=False` extracts every file again.
    """
    started = time.monotonic()
    extract_shard(sources, out_dir, cfg, 0, 1, exclude=exclude, progress=progress, reuse=reuse)
    return merge_shards(out_dir, cfg, fingerprint, count=1, started=started, canaries=canaries)
