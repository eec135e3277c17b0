"""Reading the report's inputs: metrics de-duplication, truncated lines, and reasons for what is missing."""

from __future__ import annotations

import json
from pathlib import Path

from report_fixtures import audit_lines, write_jsonl

from selfsup.report.inputs import parse_metrics, read_audit, read_inputs, read_json_object


def test_resumed_run_keeps_the_last_occurrence_per_kind_and_step() -> None:
    """Steps logged again after a resume appear once, with the later values, sorted by step."""
    lines = [
        {"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0}, {"step": 2, "val_loss": 4.5, "tokens": 8},
        {"step": 3, "loss": 3.0},
        # killed after step 3, resumed from the step-1 checkpoint:
        {"step": 2, "loss": 4.1}, {"step": 2, "val_loss": 4.6, "tokens": 8}, {"step": 3, "loss": 3.1},
    ]
    metrics = parse_metrics(json.dumps(x) for x in lines)
    assert [(p["step"], p["loss"]) for p in metrics.train] == [(1, 5.0), (2, 4.1), (3, 3.1)]
    assert [(p["step"], p["val_loss"]) for p in metrics.validation] == [(2, 4.6)]
    assert metrics.skipped_lines == 0


def test_truncated_and_foreign_lines_are_skipped_not_raised() -> None:
    """Half a line, a non-object or a line without an integer step is counted as skipped; other kinds are ignored."""
    lines = ['{"step": 1, "loss": 2.0}', "", '{"event": "checkpoint", "step": 1}', "[1, 2]",
             '{"step": "2", "loss": 1.0}', '{"step": true, "loss": 1.0}', '{"step": 2, "lo']
    metrics = parse_metrics(lines)
    assert [p["step"] for p in metrics.train] == [1]
    assert metrics.skipped_lines == 4


def test_missing_inputs_each_carry_a_reason(tmp_path: Path) -> None:
    """In an empty work directory every input is missing, each with the file and the command that makes it."""
    inputs = read_inputs(tmp_path)
    assert inputs.eval.value is None and inputs.eval.missing == "eval.json not found (run `selfsup eval` to make it)"
    assert "run/metrics.jsonl not found" in inputs.metrics.missing
    assert "corpus/audit.jsonl not found" in inputs.audit.missing
    assert "model/README.md not found" in inputs.model_dir.missing


def test_json_object_reader_explains_bad_files(tmp_path: Path) -> None:
    """Invalid JSON and JSON that is not an object are reasons, not exceptions."""
    bad = tmp_path / "x.json"
    bad.write_text("{oops")
    assert "x.json is not valid JSON (line 1" in read_json_object(bad, tmp_path, "eval").missing
    bad.write_bytes(b"\xff\xfe{")
    assert read_json_object(bad, tmp_path, "eval").missing == "x.json is not UTF-8 text"
    bad.write_text("3")
    assert read_json_object(bad, tmp_path, "eval").missing == "x.json holds a JSON int, not an object"


def test_audit_keeps_first_rows_and_counts_everything(tmp_path: Path) -> None:
    """The audit keeps the first `limit` files not ingested and counts all files by status and reason."""
    path = tmp_path / "audit.jsonl"
    write_jsonl(path, audit_lines())
    audit = read_audit(path, tmp_path, limit=4).value
    assert [r["path"] for r in audit.rows] == ["manuals/empty-0.txt", "manuals/empty-1.txt",
                                               "manuals/blob-0.bin", "manuals/blob-1.bin"]
    assert audit.more == 6
    assert audit.by_status == {"ingested": 120, "dropped": 7, "duplicate": 3}
    assert audit.by_reason == {"empty": 2, "binary": 3, "unsupported_type": 2, "duplicate": 3}
