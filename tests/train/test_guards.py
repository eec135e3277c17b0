"""Non-finite steps are skipped, counted and logged; a streak stops the run with exit code 1 and
keeps the last good checkpoint; loss spikes are flagged."""

from __future__ import annotations

import json
import math

from safetensors.torch import load_file

from selfsup.train import find_latest, train
from selfsup.train.guards import LossSpikeMonitor, NonFiniteGuard
from tests.train.conftest import checkpointed_recipe
from tests.train.test_checkpoint import _cli, _recipe_file, said


def _lines(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(x)]


def test_a_nan_step_is_skipped_counted_and_logged(prepared, tmp_path, monkeypatch, capsys):
    """NaN injected at step 3 (test hook): no optimizer update at that step, the run finishes, the
    metrics line says so (loss null, skipped) and the count is carried in every later line."""
    monkeypatch.setenv("SELFSUP_TEST_NAN_AT_STEPS", "3")
    run = tmp_path / "run"
    summary = train(prepared["shards"], prepared["tokenizer"], run, checkpointed_recipe(prepared), fingerprint="fp")
    assert "step 3: loss nan" in said(capsys)
    lines = _lines(run)
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[2]["loss"] is None and lines[2]["skipped"] is True
    assert [x["skipped_nonfinite"] for x in lines] == [0, 0, 1, 1, 1, 1]
    assert all(math.isfinite(x["loss"]) for i, x in enumerate(lines) if i != 2)
    assert summary["steps"] == 6 and summary["skipped_nonfinite"] == 1
    optimizer = load_file(find_latest(run)[0] / "optimizer.safetensors")
    assert {float(v) for k, v in optimizer.items() if k.endswith(".step")} == {5.0}  # 6 steps, 5 updates


def test_persistent_nan_stops_with_exit_code_1_and_keeps_the_last_checkpoint(prepared, tmp_path, monkeypatch, capsys):
    """NaN from step 4 on, 3 allowed in a row: `selfsup train` stops at step 6 with exit code 1 and a
    message naming the steps and the checkpoint kept (step-4, saved before the streak hit its
    limit). The streak is part of the checkpoint, so a resumed run stops at the same step."""
    recipe = _recipe_file(tmp_path / "r.toml", max_steps=10, checkpoint_every_steps=2, max_nonfinite_in_a_row=3)
    args = ["train", prepared["shards"], "--tokenizer", prepared["tokenizer"], "--out", tmp_path / "run", "--config", recipe]
    monkeypatch.setenv("SELFSUP_TEST_NAN_AT_STEPS", "4-")
    for attempt in ("first", "resumed"):
        assert _cli(monkeypatch, *args) == 1
        err = said(capsys)
        assert "3 steps in a row (steps 4-6) had a non-finite loss or gradient norm" in err, err
        assert "step-4, is kept" in err
        assert find_latest(tmp_path / "run")[0].name == "step-4"
        assert [x["step"] for x in _lines(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]


def test_nonfinite_guard_counts_streaks():
    guard = NonFiniteGuard(limit=2)
    assert guard.check(1.0, 1.0)
    assert not guard.check(float("nan"), 1.0) and not guard.exhausted
    assert guard.check(1.0, 1.0) and guard.in_a_row == 0
    assert not guard.check(1.0, float("inf")) and not guard.check(float("-inf"), 0.0)
    assert guard.exhausted and guard.state_dict() == {"skipped_nonfinite": 3, "nonfinite_in_a_row": 2}


def test_loss_spike_monitor_flags_only_real_spikes():
    """A falling, noisy loss is not flagged; a jump far above the recent spread is, once."""
    monitor = LossSpikeMonitor(window=20, sigmas=5.0)
    noisy = [5.0 - 0.02 * i + (0.05 if i % 2 else -0.05) for i in range(40)]
    assert not any(monitor.observe(x) for x in noisy)
    mean_std = monitor.observe(9.0)
    assert mean_std is not None and abs(mean_std[0] - 4.41) < 0.1
    assert monitor.observe(float("nan")) is None
    off = LossSpikeMonitor(sigmas=None)
    assert not any(off.observe(x) for x in [*noisy, 100.0])
