"""What `selfsup ingest` prints at the end: the manifest's counts as two compact rich tables.

    by format   files read, MB read, documents kept          (manifest `formats`)
    outcome     files seen, ingested, dropped by reason, duplicates (exact, near), PII replacements
                by type, languages, files extracted / reused from the cache, time

The report's corpus section shows the same figures (report.sections.corpus_section).
`plan_table` is the `--dry-run` view: files and MB per format to read, and per reason to skip.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from selfsup.console import esc
from selfsup.ingest.dry_run import Plan

MB = 2**20
MAX_REASONS = 8


def counts(values: dict[str, int] | None, limit: int = MAX_REASONS) -> str:
    """{"a": 3, "b": 1} → "3 a, 1 b", largest first, the tail summed up."""
    ordered = sorted((values or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{n:,} {k}" for k, n in ordered[:limit]]
    if len(ordered) > limit:
        shown.append(f"{sum(n for _, n in ordered[limit:]):,} in {len(ordered) - limit} more")
    return ", ".join(shown) or "none"


def outcome_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of the outcome table: also what tests compare with the report."""
    audit = manifest.get("audit") or {}
    dropped = {k: v for k, v in (manifest.get("dropped") or {}).items() if k not in ("duplicate", "near_duplicate")}
    rows = [
        ("files seen", f"{manifest.get('files_seen', 0):,}"),
        ("ingested", f"{audit.get('ingested', 0):,} files → {manifest.get('documents', 0):,} documents "
                     f"({manifest.get('train_documents', 0):,} train, {manifest.get('validation_documents', 0):,} validation)"),
        ("dropped", counts(dropped)),
        ("duplicates", f"{manifest.get('duplicates', 0):,} exact, {manifest.get('near_duplicates', 0):,} near"),
        ("PII replaced", counts(manifest.get("pii"))),
        ("languages", counts(manifest.get("languages"), limit=6)),
    ]  # fmt: skip
    if "files_extracted" in manifest:
        rows.append(("extraction", f"{manifest['files_extracted']:,} files extracted, {manifest.get('files_reused', 0):,} unchanged "
                                   f"(reused), {manifest.get('extraction_shards', 1)} shard(s)"))  # fmt: skip
    rows.append(("time", f"{manifest.get('seconds', 0):.1f} s"))
    return rows


def summary(manifest: dict[str, Any]) -> Group:
    """The end-of-ingest view of a manifest."""
    formats = Table(title="ingest: by format", title_justify="left", box=None, pad_edge=False)
    for column in ("format", "files", "MB read", "documents"):
        formats.add_column(column, justify="left" if column == "format" else "right")
    for fmt, c in (manifest.get("formats") or {}).items():
        formats.add_row(esc(fmt), f"{c.get('files', 0):,}", f"{c.get('bytes', 0) / MB:,.1f}", f"{c.get('documents', 0):,}")
    outcome = Table(show_header=False, box=None, pad_edge=False)
    outcome.add_column(style="bold")
    outcome.add_column()
    for label, value in outcome_rows(manifest):
        outcome.add_row(label, esc(value))
    return Group(formats, "", outcome)


def plan_table(plan: Plan, shard: str | None = None) -> Table:
    """The `--dry-run` view."""
    title = f"dry run{f' (shard {shard})' if shard else ''}: {plan.files:,} files, nothing written"
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in ("would", "format / reason", "files", "MB"):
        table.add_column(column, justify="right" if column in ("files", "MB") else "left")
    for fmt, n in plan.read_files.most_common():
        table.add_row("read", fmt, f"{n:,}", f"{plan.read_bytes[fmt] / MB:,.1f}")
    for reason, n in plan.skip_files.most_common():
        table.add_row("skip", esc(reason), f"{n:,}", f"{plan.skip_bytes[reason] / MB:,.1f}")
    return table
