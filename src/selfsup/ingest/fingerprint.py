"""What an ingest depends on, as hashes: the input listing, the settings, and the settings of extraction.

    listing digest   the sources and every walked entry (path, size, mtime_ns, problem): no file read
    fingerprint      settings + listing digest: the corpus manifest's key ("is ingest done?")
    extraction key   the settings that change what one file turns into: cached extraction
                     results (extracted/) made under another key are not reused

The split, the shard size and the near-duplicate threshold act only when the extracted files are
merged, so changing them re-merges but never re-extracts.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import metadata
from collections.abc import Iterable, Sequence
from pathlib import Path

from selfsup.config import CorpusConfig, settings_hash
from selfsup.ingest.discover import Entry, display_path, walk_sources

# Bump when reading, decoding or normalising changes: old corpora then no longer count as done,
# and old extraction results are not reused.
INGEST_VERSION = 5  # 5: MinHash signatures are 32-bit permutations (selfsup.dedup.minhash)
# Settings that change how fast, not what: left out of every hash.
SPEED_ONLY = {"sources", "workers"}
# Settings used only when merging: left out of the extraction key.
MERGE_ONLY = {"validation_fraction", "shard_documents", "near_dedup_threshold"}


class ListingDigest:
    """sha256 of the sources and of the walk's entries, fed one entry at a time (one walk serves all)."""

    def __init__(self, sources: Sequence[Path]) -> None:
        self._hash = hashlib.sha256(json.dumps([display_path(s) for s in sources]).encode())
        self.entries = 0

    def add(self, entry: Entry) -> None:
        row = (entry.source_index, entry.rel, entry.size, entry.mtime_ns, entry.problem)
        self._hash.update(json.dumps(row).encode() + b"\n")
        self.entries += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def listing_digest(sources: Sequence[Path], follow_symlinks: bool, exclude: Iterable[Path] = ()) -> str:
    digest = ListingDigest(sources)
    for entry in walk_sources(sources, follow_symlinks, exclude):
        digest.add(entry)
    return digest.hexdigest()


def fingerprint_of(cfg: CorpusConfig, listing: str) -> str:
    """The corpus fingerprint for these settings and this listing digest."""
    return settings_hash("ingest", INGEST_VERSION, cfg.model_dump(mode="json", exclude=SPEED_ONLY), listing)


def source_fingerprint(sources: Sequence[Path], cfg: CorpusConfig, exclude: Iterable[Path] = ()) -> str:
    """Hash of the settings and of the input listing (path, size, mtime_ns): no file is read.

    Changes when a file is added, removed, renamed, resized or touched, or when a setting of
    the [corpus] section changes (`sources` there is ignored: the `sources` argument counts).
    """
    return fingerprint_of(cfg, listing_digest(sources, cfg.follow_symlinks, exclude))


# The libraries whose upgrade can change what a file's bytes become: their versions are in the key.
EXTRACTORS = (
    "pypdfium2", "python-docx", "python-pptx", "trafilatura", "selectolax", "charset-normalizer", "ftfy", "py3langid",
)  # fmt: skip


def extraction_key(cfg: CorpusConfig) -> str:
    """Hash of what decides what a file's bytes become: the settings (all but speed and merge
    settings), the ingest version and the extractor libraries' versions."""
    settings = cfg.model_dump(mode="json", exclude=SPEED_ONLY | MERGE_ONLY)
    return settings_hash("extract", INGEST_VERSION, settings, _versions())


@cache
def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in EXTRACTORS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
