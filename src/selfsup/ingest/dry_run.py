"""`selfsup ingest --dry-run`: what would be read and what skipped, from the walk alone; nothing written.

Every file the walk meets is put under the format that would read it, or under the reason it
would be skipped without being opened: the walk's own (`symlink`, `not_a_file`, `unreadable:
...`), `unsupported_type` (by extension), `too_large` (by size), `unreadable: Permission
denied` (no read permission). What a read file then yields (empty, binary, encrypted, parse
errors, duplicates) is only known by reading it: that is the real run's audit.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from selfsup.config import CorpusConfig
from selfsup.ingest.discover import check_sources, walk_sources
from selfsup.ingest.extract import format_of
from selfsup.ingest.extract_shard import in_shard


@dataclass(slots=True)
class Plan:
    """Files and bytes per format to read, and per reason to skip."""

    read_files: Counter[str] = field(default_factory=Counter)
    read_bytes: Counter[str] = field(default_factory=Counter)
    skip_files: Counter[str] = field(default_factory=Counter)
    skip_bytes: Counter[str] = field(default_factory=Counter)
    files: int = 0  # in this shard

    def as_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        return {
            "read": {k: {"files": n, "bytes": self.read_bytes[k]} for k, n in self.read_files.most_common()},
            "skip": {k: {"files": n, "bytes": self.skip_bytes[k]} for k, n in self.skip_files.most_common()},
        }


def plan_sources(
    sources: Sequence[Path], cfg: CorpusConfig, exclude: Iterable[Path] = (), index: int = 0, count: int = 1
) -> Plan:
    """The plan for shard `index` of `count` of `sources` (the whole input by default); reads no file."""
    plan = Plan()
    for entry in walk_sources(check_sources(sources), cfg.follow_symlinks, exclude):
        if not in_shard(entry, index, count):
            continue
        plan.files += 1
        fmt = format_of(entry.path.name, cfg)
        if entry.problem is not None:
            reason = entry.problem
        elif fmt is None:
            reason = "unsupported_type"
        elif entry.size > cfg.max_file_bytes:
            reason = "too_large"
        elif not os.access(entry.path, os.R_OK):
            reason = "unreadable: Permission denied"
        else:
            plan.read_files[fmt] += 1
            plan.read_bytes[fmt] += entry.size
            continue
        plan.skip_files[reason] += 1
        plan.skip_bytes[reason] += entry.size
    return plan
