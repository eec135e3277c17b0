"""The run's length: a time budget is planned into a step count so the learning rate anneals by the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from selfsup.config import TrainConfig
from selfsup.train import find_latest, train
from selfsup.train.budget import DEFAULT_MAX_STEPS, Budget
from tests.conftest import small_recipe
from tests.train.conftest import die_after_first_save, same_weights, weights


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_time_budget_is_not_cut_by_a_default_step_count():
    """Only max_minutes set: no step bound until the plan; nothing set at all: the default step count."""
    assert Budget.from_config(TrainConfig(max_minutes=17), 4096).total_steps is None
    assert Budget.from_config(TrainConfig(), 4096).total_steps == DEFAULT_MAX_STEPS
    assert Budget.from_config(TrainConfig(max_steps=50, max_tokens=4096 * 30), 4096).total_steps == 30


def test_plan_fills_the_budget_with_the_timed_steps_and_prices_in_evaluation():
    """After the first (compiling) step and enough timed ones, the step count is fixed once: the rest
    of the budget (less a safety margin and the last evaluation) over step + evaluation time per step."""
    budget = Budget.from_config(TrainConfig(max_minutes=10, warmup_steps=5, schedule="wsd", lr=1.0), 4096)
    plans = [budget.observe_step(s, seconds, elapsed=s * 2.0, eval_seconds=10.0, eval_every=10)
             for s, seconds in enumerate([30.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0], start=1)]
    assert plans[:4] == [None] * 4 and plans[5] is None
    plan = plans[4]  # the 5th step: 4 timed after the first (warmup - 1)
    assert plan.planned_at_step == 5 and plan.step_seconds == 2.0
    fits = [n for n in range(1, 400) if n * 2.0 + ((5 + n) // 10 + 1) * 10.0 <= 600 * 0.98 - 10.0]
    assert plan.total_steps == 5 + max(fits) == 5 + 189  # 19 evaluations on the way, one at the end
    assert budget.total_steps == plan.total_steps
    assert budget.lr(plan.total_steps - 1) < 0.1 + 0.02  # the cooldown ends at the planned end (floor 0.1)
    restored = Budget.from_config(TrainConfig(max_minutes=10, warmup_steps=5, schedule="wsd", lr=1.0), 4096)
    assert restored.load_state_dict(budget.state_dict()) is None and restored.plan == budget.plan
    changed = Budget.from_config(TrainConfig(max_minutes=20, warmup_steps=5), 4096)
    event = changed.load_state_dict(budget.state_dict())
    assert event["event"] == "replan" and changed.needs_plan()


def _plan(minutes: float, eval_seconds: float, eval_every: int = 50, *, space: bool = True):
    budget = Budget.from_config(TrainConfig(max_minutes=minutes, warmup_steps=5, schedule="wsd"), 4096)
    for s in range(1, 6):
        plan = budget.observe_step(s, 3.0, elapsed=s * 3.0, eval_seconds=eval_seconds, eval_every=eval_every,
                                   space_evaluations=space)
    return plan, budget


def test_evaluations_on_the_way_cost_at_most_a_twentieth_of_a_time_budget_unless_the_recipe_says():
    """A 4-minute budget with 18-second evaluations has no room for one on the way (5% is 12 s): the
    plan evaluates only at the end and gives their time to steps. A 60-minute one (180 s: 10
    evaluations) spaces them evenly. A recipe that sets eval_every keeps it; cheap evaluations keep
    the default spacing (the plan only ever spaces them further apart)."""
    short, budget = _plan(4, 18.0)
    assert short.eval_every > short.total_steps and "evaluating at the end" in budget.describe()
    kept, _ = _plan(4, 18.0, space=False)
    assert kept.eval_every == 50 and short.total_steps > kept.total_steps  # 5 more steps in the same minutes
    assert budget.eval_every(50) == short.eval_every

    hour, _ = _plan(60, 18.0)
    on_the_way = [s for s in range(1, hour.total_steps) if s % hour.eval_every == 0]
    assert len(on_the_way) <= 10 and 18.0 * len(on_the_way) <= 0.05 * 3600
    assert len(on_the_way) >= 9  # spread over the run, not bunched at its start
    cheap, _ = _plan(60, 0.5)
    assert cheap.eval_every == 50

@pytest.mark.parametrize("schedule", ["wsd", "cosine"])
def test_a_time_bounded_run_ends_at_its_plan_near_the_floor_rate(prepared, tmp_path, monkeypatch, schedule):
    """max_minutes alone: the run plans its length from timed steps, logs the plan, stops when the plan
    is done (stopped_by max_minutes), and its last step's rate is within 2% of the peak above the floor."""
    monkeypatch.setenv("SELFSUP_TEST_STEP_SECONDS", "10")  # a deterministic clock: 5 minutes ≈ 25 steps
    recipe = small_recipe([prepared["docs"]], max_steps=None, max_minutes=5.0, schedule=schedule, min_lr_ratio=0.0,
                          warmup_steps=4, lr=1e-3, eval_every=100)
    summary = train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    records = _records(tmp_path / "run")
    plan = next(r for r in records if r.get("event") == "time_plan")
    assert plan["planned_at_step"] == 4 and plan["total_steps"] == 4 + int((300 * 0.98 - 40) // 10)
    assert plan["eval_seconds"] == 0.0  # the deterministic test clock prices no evaluation
    assert summary["steps"] == plan["total_steps"] and summary["stopped_by"] == "max_minutes"
    last_lr = [r["lr"] for r in records if "lr" in r][-1]
    assert last_lr <= 0.02 * 1e-3


def test_a_killed_time_planned_run_resumes_on_its_plan_with_the_same_weights(prepared, tmp_path, monkeypatch):
    """Killed after its plan was made, a time-bounded run resumes with the saved plan (not a new timing)
    and ends with the weights of a run that never stopped, bit for bit."""
    monkeypatch.setenv("SELFSUP_TEST_STEP_SECONDS", "20")
    straight = small_recipe([prepared["docs"]], max_steps=None, max_minutes=5.0, schedule="wsd", min_lr_ratio=0.0,
                            warmup_steps=4, precision="fp32", eval_every=100)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "straight", straight, fingerprint="fp")

    half = straight.model_copy(deep=True)
    half.train.checkpoint_every_steps = 6  # after the plan (step 4)
    die_after_first_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(prepared["shards"], prepared["tokenizer"], tmp_path / "resumed", half, fingerprint="fp")
    assert find_latest(tmp_path / "resumed")[0].name == "step-6"
    # A slightly slower clock now: a fresh timing would plan 13 steps, and the pace stays within the
    # tolerance that re-plans (budget.py), so the saved plan must win.
    monkeypatch.setenv("SELFSUP_TEST_STEP_SECONDS", "21.5")
    summary = train(prepared["shards"], prepared["tokenizer"], tmp_path / "resumed", half, fingerprint="fp")
    assert summary["time_plan"]["total_steps"] == 14 and summary["steps"] == 14
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


def test_a_pace_that_changes_after_the_plan_is_replanned_before_the_cooldown_only():
    """Steps that run twice as slow after the plan would overrun the budget, steps that run faster would
    leave part of it unused: the length is planned again from the recent pace while the wsd rate is
    flat, and not once the cooldown has begun."""
    budget = Budget.from_config(TrainConfig(max_minutes=10, warmup_steps=2, schedule="wsd", lr=1.0), 4096)
    for s in range(1, 5):
        budget.observe_step(s, 2.0, elapsed=2.0 * s, eval_seconds=0.0, eval_every=50)
    first = budget.plan.total_steps
    assert first == 4 + int((600 * 0.98 - 8) // 2)
    assert all(budget.check_pace(s, 2.0, elapsed=2.0 * s) is None for s in range(5, 30))  # on pace
    replans = [budget.check_pace(s, 4.0, elapsed=58 + 4.0 * (s - 29)) for s in range(30, 35)]
    plan = replans[2]  # the median of the last 5 steps turns slow at the third slow step
    assert replans[:2] == [None, None] and replans[3:] == [None, None]
    assert plan.replans == 1 and plan.planned_at_step == 32 and budget.plan is plan
    assert plan.total_steps == 32 + int((600 * 0.98 - 70) // 4) < first
    faster = Budget.from_config(TrainConfig(max_minutes=10, warmup_steps=2, schedule="wsd", lr=1.0), 4096)
    for s in range(1, 5):  # the first timed steps are slow (warming up); later ones take 1.5 s
        faster.observe_step(s, 2.0, elapsed=2.0 * s, eval_seconds=0.0, eval_every=50)
    ups = [faster.check_pace(s, 1.5, elapsed=8 + 1.5 * (s - 4)) for s in range(5, 10)]
    assert ups[:4] == [None] * 4 and ups[4].replans == 1  # once the 5-step window is full
    assert ups[4].total_steps == 9 + int((600 * 0.98 - 15.5) // 1.5) > first  # the time is not left unused
    late = Budget.from_config(TrainConfig(max_minutes=10, warmup_steps=2, schedule="wsd", lr=1.0), 4096)
    late.plan = plan
    assert all(late.check_pace(s, 8.0, elapsed=500.0) is None for s in range(plan.total_steps - 5, plan.total_steps))
