"""audit.jsonl: what happened to every input, one JSON object per line, written as we go.

    {"path": str, "status": "ingested" | "dropped" | "duplicate", "reason": str | null, "doc_id": str | null}

Every input file has exactly one line; a JSONL file also has one line (`path#lineN`) per record
that was dropped or found to be a duplicate. A reason is a code, optionally followed by ": " and
a detail (`unreadable: Permission denied`); duplicates have `duplicate_of:<id>` (exact) or
`near_duplicate_of:<id>` (MinHash) and the kept original's id in `doc_id`. Files holding many
documents (JSONL, CSV, Parquet, mbox, zip, tar) get one line per piece not ingested, named
`path#lineN`, `path#rowN`, `path#msgN`, `archive.zip!member` (`!inner.zip!member#line2` nested). The counts kept here go into the manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO

AUDIT = "audit.jsonl"


def reason_code(reason: str) -> str:
    """`unreadable: Permission denied` → `unreadable`; `duplicate_of:<id>` → `duplicate`;
    `near_duplicate_of:<id>` → `near_duplicate`; `filtered:symbols` stays `filtered:symbols`."""
    if reason.startswith("duplicate_of:"):
        return "duplicate"
    if reason.startswith("near_duplicate_of:"):
        return "near_duplicate"
    if reason.startswith("filtered:"):
        return reason.split(": ", 1)[0]
    return reason.split(":", 1)[0]


class AuditLog:
    """Writes audit lines and counts them: by status, by reason code, and per input file."""

    def __init__(self, path: Path) -> None:
        # Paths are already printable; backslashreplace only guards a stray surrogate in a detail.
        self._fh: IO[str] = open(path, "w", encoding="utf-8", errors="backslashreplace")
        self.by_status: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()  # every line that is not `ingested`
        self.file_reasons: Counter[str] = Counter()  # file lines only (what the user sees per file)
        self.files = 0

    def write(self, path: str, status: str, reason: str | None = None, doc_id: str | None = None, *, file: bool = True) -> None:
        """One line; `file=False` for a record inside a file (its `path#lineN` line)."""
        line = {"path": path, "status": status, "reason": reason, "doc_id": doc_id}
        self._fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.by_status[status] += 1
        if reason is not None:
            self.by_reason[reason_code(reason)] += 1
        if file:
            self.files += 1
            if reason is not None:
                self.file_reasons[reason_code(reason)] += 1

    def close(self) -> None:
        self._fh.close()
