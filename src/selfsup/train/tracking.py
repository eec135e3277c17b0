"""Training curves where a team already looks: TensorBoard event files and MLflow runs.

`metrics.jsonl` is always written and stays the record (the report reads it). `[train] report_to`
adds trackers that receive the same scalars as they are written: loss, lr, tokens/s, MFU, grad
norm, validation loss, domain and general bits per byte. Only the first process writes.

- **TensorBoard:** event files under `RUN/tensorboard/` (`tensorboard --logdir work/run/tensorboard`).
  A resumed run opens the writer with `purge_step` one past the checkpoint, so TensorBoard drops
  what the killed run logged after it: every step appears once.
- **MLflow:** to `MLFLOW_TRACKING_URI` when set, else a SQLite store beside the run
  (`sqlite:///WORKDIR/mlflow.db`, artefacts in `WORKDIR/mlartifacts/`; MLflow's file store is
  deprecated). The run id is kept in
  `RUN/mlflow.json`, so a resumed run logs into the same MLflow run, from the step after the last
  one MLflow already holds (MLflow cannot delete points: steps logged before the kill keep their
  values, which an exact resume reproduces anyway). Params: the resolved recipe, flattened.
- **At the end** (`log_results`, after evaluation and report): the evaluation's figures as
  metrics / a text table, `eval.json` and `report.html` as artefacts.

The packages are the optional `tracking` extra and are imported only when asked; a missing one is
one line naming the extra.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from selfsup.errors import UsageError
from selfsup.manifest import write_json_atomic

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # report_to name → the package it needs
MLFLOW_STATE = "mlflow.json"
EXPERIMENT = "selfsup"


def require_trackers(names: list[str]) -> None:
    """Fail fast, before any work, when a tracker's package is not installed."""
    missing = [TRACKERS[n] for n in names if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        raise UsageError(f"[train] report_to = {json.dumps(names)} needs {', '.join(missing)}: "
                         "pip install 'selfsup[tracking]'")


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics.jsonl record worth a curve (not the step, events or flags)."""
    if "event" in record:
        return {}
    return {k: float(v) for k, v in record.items() if k != "step" and _finite_number(v)}


def flatten(tree: dict[str, Any]) -> dict[str, str]:
    """{"train": {"lr": 1e-4}} → {"train.lr": "0.0001"}; lists and None as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in _leaves(tree)}


def flatten_numbers(tree: dict[str, Any]) -> dict[str, float]:
    """Every finite number in nested dicts, keyed by its path ("sets.heldout.trained.bits_per_byte");
    lists (examples, per-item scores) are left out: they are the report's, not a tracker's."""
    return {k: float(v) for k, v in _leaves(tree) if _finite_number(v)}


def _leaves(tree: dict[str, Any], prefix: str = ""):
    """(dotted path, value) of every non-dict value in nested dicts."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TensorBoardTracker:
    def __init__(self, run_dir: Path, resumed_step: int | None, params: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard drops what earlier writers logged from this step on (a fresh run: all of it)
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                    purge_step=resumed_step + 1 if resumed_step is not None else 0)
        if resumed_step is None:
            table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
            self.writer.add_text("recipe", "| key | value |\n|---|---|\n" + table, 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    def __init__(self, run_dir: Path, resumed_step: int | None, params: dict[str, str]) -> None:
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir)
        self.client = MlflowClient(tracking_uri=tracking_uri(run_dir))
        state_path = run_dir / MLFLOW_STATE
        state = json.loads(state_path.read_text()) if resumed_step is not None and state_path.is_file() else None
        self.logged: dict[str, int] = {}  # metric → the last step MLflow holds (a resumed run skips up to it)
        if state is not None:
            self.run_id = state["run_id"]
            for key in self.client.get_run(self.run_id).data.metrics:
                self.logged[key] = max(m.step for m in self.client.get_metric_history(self.run_id, key))
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        # With the SQLite store in the work directory, the artefacts go beside it (MLflow would put them
        # in ./mlruns of whatever folder the command ran in); a tracking server keeps its own location.
        local = None if os.environ.get("MLFLOW_TRACKING_URI") else (run_dir.resolve().parent / "mlartifacts").as_uri()
        experiment_id = (experiment.experiment_id if experiment
                         else self.client.create_experiment(EXPERIMENT, artifact_location=local))
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.resolve().parent.name).info.run_id
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        write_json_atomic(state_path, {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri})

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [Metric(k, v, now, step) for k, v in values.items() if step > self.logged.get(k, -1)]
        if fresh:
            self.client.log_batch(self.run_id, metrics=fresh)

    def close(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")


def tracking_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI, else a SQLite store in the work directory (the run's parent)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(run_dir).resolve().parent / 'mlflow.db')}"


class MetricsLog:
    """metrics.jsonl, and every tracker in `[train] report_to` fed the same records."""

    def __init__(self, path: Path, trackers: list | None = None) -> None:
        self.path = Path(path)
        self.trackers = trackers or []

    @classmethod
    def open(cls, path: Path, report_to: list[str], recipe_dump: dict[str, Any], resumed_step: int | None,
             enabled: bool = True) -> MetricsLog:
        if not enabled or not report_to:
            return cls(path)
        require_trackers(report_to)
        params = flatten(recipe_dump)
        kinds = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}
        return cls(path, [kinds[name](Path(path).parent, resumed_step, params) for name in report_to])

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        values = scalars(record)
        if values:
            for tracker in self.trackers:
                tracker.log(int(record.get("step", 0)), values)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def log_results(run_dir: Path, report_to: list[str], eval_json: Path | None, report_html: Path | None) -> None:
    """After evaluation and report: their figures and files into the run's trackers."""
    if not report_to:
        return
    require_trackers(report_to)
    run_dir = Path(run_dir)
    evaluation = json.loads(eval_json.read_text()) if eval_json and eval_json.is_file() else {}
    # the scores per text set and model, the lift summary, the cloze and fertility figures; not the
    # base's cache, the samples or per-item lists
    figures = flatten_numbers({k: evaluation[k] for k in ("sets", "lift", "cloze", "fertility") if k in evaluation})
    steps = [json.loads(line).get("step", 0) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] \
        if (run_dir / "metrics.jsonl").is_file() else [0]
    last = max(steps or [0])
    if "tensorboard" in report_to:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(run_dir / "tensorboard")) as writer:
            rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in figures.items())
            writer.add_text("evaluation", "| figure | value |\n|---|---|\n" + rows, last)
    if "mlflow" in report_to and (run_dir / MLFLOW_STATE).is_file():
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        state = json.loads((run_dir / MLFLOW_STATE).read_text())
        client = MlflowClient(tracking_uri=state["tracking_uri"])
        now = int(time.time() * 1000)
        items = [Metric(f"eval.{k}", v, now, last) for k, v in figures.items()]
        for i in range(0, len(items), 1000):
            client.log_batch(state["run_id"], metrics=items[i : i + 1000])
        for path in (eval_json, report_html):
            if path is not None and Path(path).is_file():
                client.log_artifact(state["run_id"], str(path))
