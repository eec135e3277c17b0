"""Trackers: TensorBoard and MLflow receive the scalars metrics.jsonl gets, once per step, across a kill
and resume; read back with TensorBoard's own reader and MLflow's client."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from selfsup.errors import UsageError
from selfsup.train import train
from selfsup.train.tracking import MLFLOW_STATE, MetricsLog, log_results, require_trackers
from tests.train.conftest import checkpointed_recipe

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def _die_after_logging_step(monkeypatch, step: int) -> None:
    """The next run 'crashes' right after it logged step `step`'s training record (its checkpoint at
    an earlier step), so the trackers hold steps the resumed run will log again."""
    original = MetricsLog.append

    def append_then_die(self, record):
        original(self, record)
        if record.get("step") == step and "loss" in record:
            monkeypatch.setattr(MetricsLog, "append", original)
            raise KeyboardInterrupt

    monkeypatch.setattr(MetricsLog, "append", append_then_die)


def _tensorboard_steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_a_killed_and_resumed_run_logs_every_step_once_to_tensorboard_and_mlflow(prepared, tmp_path, monkeypatch):
    """Checkpoint at step 2, killed after logging step 3, resumed: TensorBoard (purge on resume) and the
    same MLflow run (skipping what it holds) have loss at steps 1-6 exactly once, the validation
    curve, the recipe as params, and the run is finished."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = checkpointed_recipe(prepared, report_to=["tensorboard", "mlflow"], eval_every=2)
    run = tmp_path / "work" / "run"
    _die_after_logging_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(prepared["shards"], prepared["tokenizer"], run, recipe, fingerprint="fp")
    first_id = json.loads((run / MLFLOW_STATE).read_text())["run_id"]
    train(prepared["shards"], prepared["tokenizer"], run, recipe, fingerprint="fp")

    assert _tensorboard_steps(run, "loss") == [1, 2, 3, 4, 5, 6]
    assert _tensorboard_steps(run, "val_loss") == [2, 4, 6]
    state = json.loads((run / MLFLOW_STATE).read_text())
    assert state["run_id"] == first_id and state["tracking_uri"] == f"sqlite:///{(tmp_path / 'work' / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    assert [m.step for m in client.get_metric_history(first_id, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [m.step for m in client.get_metric_history(first_id, "val_loss")] == [2, 4, 6]
    mlflow_run = client.get_run(first_id)
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.data.params["train.max_steps"] == "6"
    jsonl = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = {m.step: m.value for m in client.get_metric_history(first_id, "lr")}
    assert all(last[r["step"]] == pytest.approx(r["lr"]) for r in jsonl if "lr" in r)  # the same values as the record


def test_results_and_report_reach_the_tracker_after_evaluation(prepared, tmp_path, monkeypatch):
    """log_results: the evaluation's numbers become MLflow metrics (and a TensorBoard text table), and
    eval.json and report.html are artefacts of the same run, stored beside the work directory's store."""
    monkeypatch.chdir(tmp_path)  # a stray ./mlruns would appear here
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = checkpointed_recipe(prepared, report_to=["tensorboard", "mlflow"], max_steps=2)
    run = tmp_path / "work" / "run"
    train(prepared["shards"], prepared["tokenizer"], run, recipe, fingerprint="fp")
    eval_json = tmp_path / "work" / "eval.json"
    eval_json.write_text(json.dumps({"sets": {"heldout": {"trained": {"bits_per_byte": 1.25}}}, "samples": ["x"]}))
    report = tmp_path / "work" / "report.html"
    report.write_text("<html>report</html>")
    log_results(run, ["tensorboard", "mlflow"], eval_json, report)
    assert not (tmp_path / "mlruns").exists()
    state = json.loads((run / MLFLOW_STATE).read_text())
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    metrics = client.get_run(state["run_id"]).data.metrics
    assert metrics["eval.sets.heldout.trained.bits_per_byte"] == 1.25
    assert {a.path for a in client.list_artifacts(state["run_id"])} == {"eval.json", "report.html"}
    stored = tmp_path / "work" / "mlartifacts"  # beside the store, not in ./mlruns of the current folder
    assert {p.name for p in stored.rglob("*") if p.is_file()} == {"eval.json", "report.html"}


def test_a_missing_tracker_package_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(UsageError, match=r"selfsup\[tracking\]"):
        require_trackers(["tensorboard", "mlflow"])
    require_trackers(["tensorboard"])
