"""Read what the other stages left in a work directory, never failing on a missing or damaged file.

The report is often read after something went wrong: a run killed half-way, a stage skipped, a
metrics file cut off mid-line by SIGKILL. So every reader here returns `Loaded(value, missing)`:
the value, or a one-line reason it is not available, which the page shows in place of the section.
Readers only read; deciding what to show is `sections.py`'s job.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Iterable, TypeVar

from selfsup.workdir import Workdir

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Loaded(Generic[T]):
    """An input, or why it is not available (`missing` is a short sentence, shown as-is)."""

    value: T | None
    missing: str | None = None

    @classmethod
    def gone(cls, why: str) -> Loaded[Any]:
        return cls(None, why)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Training and validation lines of metrics.jsonl, one per step, sorted by step.

    A resumed run logs again the steps between its last checkpoint and the kill, so a step can
    appear more than once; the last occurrence wins because it belongs to the run that went on.
    """

    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    skipped_lines: int = 0  # lines that were not a JSON object (typically a truncated last line)
    tradeoff: list[dict[str, Any]] = field(default_factory=list)  # lines with domain_bpb / general_bpb


@dataclass(frozen=True, slots=True)
class Audit:
    """The files that did not become documents (first `limit`), plus counts over the whole audit."""

    rows: list[dict[str, Any]]
    more: int  # files not ingested beyond the listed rows
    by_status: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)  # reasons of files not ingested
    skipped_lines: int = 0


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """Everything the page is made from; each part may be missing on its own."""

    workdir: Path
    corpus: Loaded[dict[str, Any]]
    audit: Loaded[Audit]
    shards_index: Loaded[dict[str, Any]]
    shards_manifest: Loaded[dict[str, Any]]
    metrics: Loaded[Metrics]
    run: Loaded[dict[str, Any]]
    eval: Loaded[dict[str, Any]]
    model_dir: Loaded[Path]
    lineage: Loaded[dict[str, Any]] = Loaded.gone("lineage.json not found (written by `selfsup run`)")
    privacy: Loaded[dict[str, Any]] = Loaded.gone("audit.json not found (written by `selfsup audit`)")


def read_inputs(workdir: Path, audit_rows: int = 50) -> ReportInputs:
    """Read every input of the report from `workdir` (which must exist; the caller checks)."""
    wd = Workdir(Path(workdir))
    return ReportInputs(
        workdir=wd.root,
        corpus=read_json_object(wd.corpus / "manifest.json", wd.root, made_by="ingest"),
        audit=read_audit(wd.corpus / "audit.jsonl", wd.root, limit=audit_rows),
        shards_index=read_json_object(wd.shards / "index.json", wd.root, made_by="pack"),
        shards_manifest=read_json_object(wd.shards / "manifest.json", wd.root, made_by="pack"),
        metrics=read_metrics(wd.run / "metrics.jsonl", wd.root),
        run=read_json_object(wd.run / "run.json", wd.root, made_by="train"),
        eval=read_json_object(wd.eval_json, wd.root, made_by="eval"),
        model_dir=read_model_dir(wd.model, wd.root),
        lineage=read_json_object(wd.root / "lineage.json", wd.root, made_by="run"),
        privacy=read_json_object(wd.audit_json, wd.root, made_by="audit"),
    )


def read_json_object(path: Path, root: Path, made_by: str) -> Loaded[dict[str, Any]]:
    """A JSON file holding an object; missing, unreadable, invalid or non-object → a reason."""
    name = _shown(path, root)
    if not path.is_file():
        return Loaded.gone(f"{name} not found (run `selfsup {made_by}` to make it)")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return Loaded.gone(f"{name} could not be read ({exc.strerror or exc})")
    except UnicodeDecodeError:
        return Loaded.gone(f"{name} is not UTF-8 text")
    except json.JSONDecodeError as exc:
        return Loaded.gone(f"{name} is not valid JSON (line {exc.lineno}: {exc.msg})")
    if not isinstance(value, dict):
        return Loaded.gone(f"{name} holds a JSON {type(value).__name__}, not an object")
    return Loaded(value)


def parse_metrics(lines: Iterable[str]) -> Metrics:
    """Split metrics lines into training (`loss`) and validation (`val_loss`) points per step."""
    train: dict[int, dict[str, Any]] = {}
    validation: dict[int, dict[str, Any]] = {}
    tradeoff: dict[int, dict[str, Any]] = {}
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(record, dict) or not _is_int(record.get("step")):
            skipped += 1
            continue
        if "domain_bpb" in record or "general_bpb" in record:
            tradeoff[record["step"]] = record  # measured during training (evaluation/during_training.py)
        if "val_loss" in record:
            validation[record["step"]] = record
        elif "loss" in record:
            train[record["step"]] = record
        # Other kinds of lines (events, notes) are not plotted and not an error.
    return Metrics(
        train=[train[s] for s in sorted(train)],
        validation=[validation[s] for s in sorted(validation)],
        skipped_lines=skipped,
        tradeoff=[tradeoff[s] for s in sorted(tradeoff)],
    )


def read_metrics(path: Path, root: Path) -> Loaded[Metrics]:
    name = _shown(path, root)
    if not path.is_file():
        return Loaded.gone(f"{name} not found (run `selfsup train` to make it)")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            metrics = parse_metrics(fh)
    except OSError as exc:
        return Loaded.gone(f"{name} could not be read ({exc.strerror or exc})")
    if not metrics.train and not metrics.validation:
        return Loaded.gone(f"{name} has no training or validation lines yet")
    return Loaded(metrics)


def read_audit(path: Path, root: Path, limit: int = 50) -> Loaded[Audit]:
    """Stream the audit (it has one line per input file, so it can be long); keep the first rows."""
    name = _shown(path, root)
    if not path.is_file():
        return Loaded.gone(f"{name} not found (run `selfsup ingest` to make it)")
    rows: list[dict[str, Any]] = []
    more = skipped = 0
    by_status: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    skipped += 1
                    continue
                if not isinstance(record, dict):
                    skipped += 1
                    continue
                status = str(record.get("status") or "unknown")
                by_status[status] += 1
                if status == "ingested":
                    continue
                by_reason[str(record.get("reason") or status)] += 1
                if len(rows) < limit:
                    rows.append(record)
                else:
                    more += 1
    except OSError as exc:
        return Loaded.gone(f"{name} could not be read ({exc.strerror or exc})")
    return Loaded(Audit(rows, more, dict(by_status), dict(by_reason), skipped))


def read_model_dir(model_dir: Path, root: Path) -> Loaded[Path]:
    """The exported model directory counts as there once its model card (README.md) is written."""
    if (model_dir / "README.md").is_file():
        return Loaded(model_dir)
    return Loaded.gone(f"{_shown(model_dir, root)}/README.md not found (run `selfsup export` to make it)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(path: Path, root: Path) -> str:
    """A path as the reader knows it: relative to the work directory when inside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
