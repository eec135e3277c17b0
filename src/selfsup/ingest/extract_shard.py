"""Extract one shard of the inputs: walk, take this shard's files, read, reuse or extract, write the rows.

    walk (every file, numbered in walk order) → this shard's files (a stable hash of the path)
    → read, capped → sha256 → earlier result by content (cache) or sandboxed extraction
    → CORPUS/extracted/shard-i-of-N.parquet (+ .json last)

Shard i of N takes the files whose `xxh64(relative path) % N == i`: the choice depends on the
file's own path only, so adding a file never moves another one to a different shard. Every shard
walks the whole listing (cheap: no file is read) so that it numbers its files by their place in
the whole walk, and records the listing's digest: the merge checks that all shards saw the same
folder. A single-machine run is shard 0 of 1.

Re-runs are incremental: the earlier results in `extracted/` are looked up by content hash, so
only new and changed files are extracted; the reused ones are copied into the new shard file,
which replaces the old one. Nothing here decides duplicates or the split: that is the merge.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import xxhash

from selfsup.config import CorpusConfig
from selfsup.errors import StageFailure, UsageError
from selfsup.ingest.discover import Entry, check_sources, display_path, walk_sources
from selfsup.ingest.extract import format_of
from selfsup.ingest.extracted import EXTRACTED, ExtractionCache, ShardWriter, committed_shards, to_row
from selfsup.ingest.fingerprint import ListingDigest, extraction_key
from selfsup.ingest.process import FileResult, failed, process_file, warm_up
from selfsup.ingest.read import Unreadable, read_capped
from selfsup.ingest.sandbox import Sandbox, default_workers
from selfsup.manifest import MANIFEST


def parse_shard(text: str) -> tuple[int, int]:
    """`"3/8"` → (3, 8); UsageError naming the flag otherwise."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise UsageError(f"--shard must be i/N with 0 <= i < N (e.g. --shard 3/8 for the 4th of 8), not {text!r}")
    return i, n


def in_shard(entry: Entry, index: int, count: int) -> bool:
    """Whether shard `index` of `count` takes this file: by a stable hash of its path in its source."""
    if count == 1:
        return True
    name = entry.rel or entry.display  # a source named as a file has no relative path
    return xxhash.xxh64_intdigest(name.encode("utf-8")) % count == index


def check_out_dir(sources: Sequence[Path], out_dir: Path) -> None:
    for source in sources:
        if os.path.isdir(out_dir) and os.path.samefile(source, out_dir):
            raise UsageError(f"source {display_path(source)} is the output folder; write the corpus somewhere else (--out)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"output {display_path(out_dir)} exists and is not a folder; choose another --out") from None


def extract_shard(
    sources: Sequence[Path],
    out_dir: Path,
    cfg: CorpusConfig,
    index: int = 0,
    count: int = 1,
    *,
    exclude: Iterable[Path] = (),
    progress: bool = False,
    reuse: bool = True,
) -> dict[str, Any]:
    """Write `out_dir/extracted/shard-<index>-of-<count>` for `sources`; return its JSON summary.

    The corpus manifest in `out_dir` is removed first (the corpus is being remade: a merge writes
    it again). `out_dir` and the `exclude` folders are not walked. `reuse=False` extracts every
    file again instead of taking unchanged files' earlier results.
    """
    started = time.monotonic()
    sources = check_sources(sources)
    out_dir = Path(out_dir)
    check_out_dir(sources, out_dir)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    folder = out_dir / EXTRACTED
    key = extraction_key(cfg)
    # Earlier results: this shard's own, and any of another layout (e.g. a single run before a
    # sharded one); never a sibling shard's of this layout, which may be being rewritten right now.
    reusable = [
        s for s in committed_shards(folder)
        if reuse and s.info.get("extraction") == key and ((s.index, s.count) == (index, count) or s.count != count)
    ]  # fmt: skip
    cache = ExtractionCache(reusable)
    digest = ListingDigest(sources)
    walk = _numbered(walk_sources(sources, cfg.follow_symlinks, [out_dir, *exclude]), digest, index, count)
    extraction = _Extraction(cfg, cache)
    writer = ShardWriter(folder, index, count)
    try:
        for (seq, entry, fmt, content_key, nbytes), result in extraction.results(_with_progress(walk, progress)):
            writer.add(to_row(seq, entry.display, fmt, content_key if result.reusable else None, nbytes, result))
        info = {
            "shard": index, "shards": count, "listing": digest.hexdigest(), "extraction": key,
            "sources": [display_path(s) for s in sources], "walked": digest.entries, "files": writer.files,
            "extracted": extraction.extracted, "reused": extraction.reused, "workers": extraction.workers,
            "worker_restarts": extraction.restarts, "workers_started": extraction.workers_started,
            "seconds": round(time.monotonic() - started, 3), "finished": time.time(),
        }  # fmt: skip
        writer.commit(info)
    except RuntimeError as exc:  # the sandbox could not start a worker at all
        writer.abort()
        raise StageFailure(f"ingest: {exc}; try [corpus] workers = 0 to extract in-process") from exc
    except OSError as exc:  # reading errors are audit lines; this is the output side (disk full, ...)
        writer.abort()
        raise StageFailure(f"could not write the extracted files in {display_path(folder)}: {exc.strerror or exc}") from exc
    except BaseException:
        writer.abort()
        raise
    finally:
        cache.close()
    return info


def _numbered(entries: Iterator[Entry], digest: ListingDigest, index: int, count: int) -> Iterator[tuple[int, Entry]]:
    """(place in the whole walk, entry) for this shard's entries; every entry feeds the digest."""
    for seq, entry in enumerate(entries):
        digest.add(entry)
        if in_shard(entry, index, count):
            yield seq, entry


# What the parent knows of a file before its result: (seq, entry, format, content key, bytes read).
Meta = tuple[int, Entry, str | None, str | None, int | None]


class _Extraction:
    """Results in walk order: from the parent (not read, cached) or from the sandboxed workers."""

    def __init__(self, cfg: CorpusConfig, cache: ExtractionCache) -> None:
        self.cfg, self.cache = cfg, cache
        self.workers = default_workers() if cfg.workers is None else cfg.workers
        self.extracted = self.reused = self.restarts = self.workers_started = 0

    def results(self, walk: Iterable[tuple[int, Entry]]) -> Iterator[tuple[Meta, FileResult]]:
        pending: list[Meta] = []

        def jobs() -> Iterator[tuple[Any, Any]]:
            for seq, entry in walk:
                meta, job, ready = self._prepare(seq, entry)
                pending.append(meta)
                yield job, ready

        if self.workers == 0:  # in this process: no time or memory limit (debugging, tests)
            for job, ready in jobs():
                yield pending.pop(0), ready if job is None else process_file(self.cfg, job)
            return
        # A window of 4 jobs per worker keeps every worker busy while the parent reads ahead.
        sandbox = Sandbox(
            process_file, self.cfg, _on_failure, workers=self.workers, timeout=self.cfg.timeout_seconds,
            memory_mb=self.cfg.memory_mb, window=4 * self.workers, prepare=warm_up,
        )  # fmt: skip
        with sandbox:
            for result in sandbox.map(jobs()):
                yield pending.pop(0), result
        self.restarts, self.workers_started = sandbox.restarts, sandbox.started

    def _prepare(self, seq: int, entry: Entry) -> tuple[Meta, Any, FileResult | None]:
        """(meta, job for a worker, None), or (meta, None, the result) when the parent already knows it."""
        cfg = self.cfg
        fmt = format_of(entry.path.name, cfg)
        if entry.problem is not None:
            return (seq, entry, fmt, None, None), None, failed(entry.problem)
        if fmt is None:
            return (seq, entry, fmt, None, None), None, failed("unsupported_type")
        if entry.size > cfg.max_file_bytes:  # from the walk's stat: the file is never opened
            return (seq, entry, fmt, None, None), None, failed("too_large")
        try:  # a source named explicitly may be a symlink (the user asked for it); others only if followed
            data = read_capped(entry.path, cfg.max_file_bytes, follow_symlinks=cfg.follow_symlinks or entry.rel == "")
        except Unreadable as exc:
            return (seq, entry, fmt, None, None), None, failed(exc.reason)
        key = f"{hashlib.sha256(data).hexdigest()}:{fmt}"
        meta = (seq, entry, fmt, key, len(data))
        cached = self.cache.get(key)
        if cached is not None:
            self.reused += 1
            return meta, None, cached
        self.extracted += 1
        return meta, (entry.path.name, fmt, data), None


def _on_failure(job: tuple[str, str, bytes], reason: str) -> FileResult:
    """The result of a file whose worker timed out or died: not reused, so tried again next run."""
    result = failed(reason)
    result.reusable = False
    return result


def _with_progress(walk: Iterator[tuple[int, Entry]], show: bool) -> Iterator[tuple[int, Entry]]:
    if not show:
        yield from walk
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from selfsup.console import console

    columns = (SpinnerColumn(), TextColumn("ingest: {task.completed} files"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=console) as bar:
        task = bar.add_task("ingest", total=None)
        for item in walk:
            yield item
            bar.advance(task)
