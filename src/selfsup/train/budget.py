"""How long a run is, planned so that the learning rate finishes its decay when the budget ends.

A run is bounded by `max_steps`, `max_tokens` and `max_minutes`, the first reached. Steps and
tokens give the length at once. Minutes do not: a time-bounded run whose schedule aimed at some
default step count would stop wherever the clock ran out, mid-decay or before it (a 17-minute
run of a 135M model on 2 cores does ~60 steps; a cosine aimed at 200 steps stops at 90% of its
peak and never anneals, which is where most of continued pretraining's gain is made).

So with `max_minutes` the length is *planned*: the first steps are timed (the very first, which
compiles, is left out), the evaluation the loop will do on the way is priced in, and the step
count that fits the budget is fixed. Evaluations on the way are spaced so that together they cost
at most `EVAL_SHARE` of the budget, unless the recipe sets `eval_every` itself: in a 4-minute run
of a 135M model one evaluation (~18 s on 2 cores) is six training steps, and three of them (the
start, one on the way, the end) were a fifth of the budget.

The plan is saved in every checkpoint: the rate stays a pure function of (step, plan), and a
resumed run follows the plan it was given, so it ends with the same weights as one that never
stopped. Two things re-plan, each recorded as an event in metrics.jsonl: a changed `max_minutes`
on resume, and steps that run at another pace after the plan (slower: other work on the same
cores; faster: the first timed steps were still warming up), caught while a `wsd` rate is still
flat so the cooldown still ends with the budget. The clock still stops the run if all else fails,
so the budget is never overrun by more than one step.

The first step at which a time plan can be made is before the end of warmup when warmup is long
enough; earlier steps run on warmup (a function of the step alone) or, with no warmup, at the
peak, which `wsd` holds anyway.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from selfsup.train.schedule import decay_start, lr_at

DEFAULT_MAX_STEPS = 200  # when nothing bounds the run
TIMED_STEPS_MIN = 3  # steps timed before a plan (after the first, which compiles)
TIMED_STEPS_MAX = 10  # no use waiting longer: step times of a packed run hardly vary
SAFETY = 0.98  # share of the remaining time the plan fills (checkpoint writes, a slower step)
PACE_WINDOW = 5  # recent steps whose median pace is checked against the plan
PACE_TOLERANCE = 0.02  # a projected overrun beyond this share of the budget re-plans (before the cooldown); so
                       # does a projected end that leaves more than this share and a step unused
EVAL_SHARE = 0.05  # evaluations on the way (not the one at the end) get at most this share of a time budget


@dataclass
class TimePlan:
    """The step count fixed for a time budget, and what it was computed from."""

    total_steps: int
    planned_at_step: int
    step_seconds: float
    eval_seconds: float  # one evaluation on the way (validation + trade-off probe)
    eval_every: int
    budget_minutes: float
    replans: int = 0  # times the pace was re-measured because steps ran slower than planned


@dataclass
class Budget:
    """The run's bounds and its (saved) time plan; gives the rate of each step and says when to stop.

    `fixed_steps` comes from max_steps / max_tokens (None when only minutes bound the run); `fixed_by`
    names which of them set it.
    """

    peak_lr: float
    warmup: int
    min_ratio: float
    schedule: str
    decay_fraction: float
    fixed_steps: int | None
    max_minutes: float | None
    fixed_by: str = "max_steps"
    plan: TimePlan | None = None
    _step_seconds: list[float] = field(default_factory=list)
    _recent: list[float] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg, tokens_per_step: int) -> Budget:
        fixed, fixed_by = cfg.max_steps, "max_steps"
        if cfg.max_tokens is not None:
            by_tokens = math.ceil(cfg.max_tokens / tokens_per_step)
            if fixed is None or by_tokens < fixed:
                fixed, fixed_by = by_tokens, "max_tokens"
        if fixed is None and cfg.max_minutes is None:
            fixed = DEFAULT_MAX_STEPS
        return cls(peak_lr=cfg.lr, warmup=cfg.warmup_steps, min_ratio=cfg.min_lr_ratio, schedule=cfg.schedule,
                   decay_fraction=cfg.decay_fraction, fixed_steps=fixed, max_minutes=cfg.max_minutes, fixed_by=fixed_by)

    @property
    def total_steps(self) -> int | None:
        """The length the schedule aims at: the fixed bound or the time plan, the smaller."""
        planned = self.plan.total_steps if self.plan else None
        if self.fixed_steps is None:
            return planned
        return min(self.fixed_steps, planned) if planned is not None else self.fixed_steps

    def lr(self, step: int) -> float:
        """The rate for the update after `step` completed steps: a pure function of (step, plan)."""
        return lr_at(step, peak=self.peak_lr, warmup=self.warmup, total=self.total_steps, min_ratio=self.min_ratio,
                     kind=self.schedule, decay_fraction=self.decay_fraction)

    def stop_reason(self, step: int) -> str | None:
        """Which bound ends the run at `step` (None: go on); the wall clock itself is the loop's to watch."""
        total = self.total_steps
        if total is None or step < total:
            return None
        return "max_minutes" if self.plan is not None and total == self.plan.total_steps else self.fixed_by

    def needs_plan(self) -> bool:
        return self.max_minutes is not None and self.plan is None

    def observe_step(self, step: int, seconds: float, elapsed: float, eval_seconds: float, eval_every: int,
                     *, space_evaluations: bool = False) -> TimePlan | None:
        """Record how long the step that ended at `step` took; fix the time plan once enough are timed.

        `eval_seconds`: one of the loop's evaluations on the way (validation, trade-off probe), done
        every `eval_every` steps and once at the end; with `space_evaluations` (the recipe left
        eval_every out) the plan spaces them further apart when they would cost more than
        `EVAL_SHARE` of the budget.
        Returns the plan when it was made at this step.
        """
        if not self.needs_plan():
            return None
        self._step_seconds.append(_test_step_seconds() or seconds)
        timed = self._step_seconds[1:]  # the first includes compilation and allocator warm-up
        wanted = max(TIMED_STEPS_MIN, min(TIMED_STEPS_MAX, self.warmup - 1))
        if len(timed) < wanted:
            return None
        per_step = statistics.median(timed)
        if _test_step_seconds():
            elapsed, eval_seconds = step * per_step, 0.0  # tests: a deterministic clock, so two runs plan alike
        remaining = self.max_minutes * 60 * SAFETY - elapsed
        if space_evaluations and eval_seconds > 0:
            eval_every = max(eval_every, spaced_evaluations(self.max_minutes * 60, remaining, per_step, eval_seconds, step))
        total = step + steps_that_fit(remaining, per_step, eval_seconds, eval_every, step)
        self.plan = TimePlan(total_steps=total, planned_at_step=step, step_seconds=per_step, eval_seconds=eval_seconds,
                             eval_every=eval_every, budget_minutes=self.max_minutes)
        return self.plan

    def check_pace(self, step: int, seconds: float, elapsed: float) -> TimePlan | None:
        """After the plan: if recent steps run at another pace than planned so that the planned end would
        overrun the budget (a busy machine) or leave a step or more of it unused (the first timed steps
        are often slower, while the allocator and caches warm up: 3.3 s against 3.0 s later for
        SmolLM2-135M, a tenth of a 4-minute budget), plan again from the recent pace, while the
        cooldown has not begun (with wsd the rate is flat until then, so nothing jumps). Returns the new
        plan when it re-planned."""
        plan = self.plan
        if plan is None or self.max_minutes is None:
            return None
        self._recent.append(_test_step_seconds() or seconds)
        del self._recent[:-PACE_WINDOW]
        if len(self._recent) < PACE_WINDOW or step >= self._decay_start():
            return None
        pace = statistics.median(self._recent)
        if _test_step_seconds():
            elapsed = step * pace
        projected = elapsed + seconds_for(plan.total_steps - step, pace, plan.eval_seconds, plan.eval_every, step)
        budget = self.max_minutes * 60
        unused = max(pace, PACE_TOLERANCE * budget)  # hysteresis: small wobbles in the pace re-plan nothing
        if budget * SAFETY - unused <= projected <= budget * (1 + PACE_TOLERANCE):
            return None  # ends within the budget, with less than a step (and 2% of it) unused
        remaining = budget * SAFETY - elapsed
        total = step + steps_that_fit(remaining, pace, plan.eval_seconds, plan.eval_every, step)
        if total == plan.total_steps:
            return None
        self.plan = TimePlan(total_steps=total, planned_at_step=step, step_seconds=pace, eval_seconds=plan.eval_seconds,
                             eval_every=plan.eval_every, budget_minutes=self.max_minutes, replans=plan.replans + 1)
        self._recent.clear()
        return self.plan

    def eval_every(self, default: int) -> int:
        """Steps between evaluations on the way: the plan's spacing once there is a plan."""
        return self.plan.eval_every if self.plan is not None else default

    def _decay_start(self) -> int:
        # cosine decays from the end of warmup, so a new length would bend its curve: no re-plan there
        return decay_start(self.total_steps or 0, self.warmup, self.schedule, self.decay_fraction)

    def state_dict(self) -> dict[str, Any]:
        return {"time_plan": asdict(self.plan) if self.plan else None}

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """Take the saved plan; returns a re-plan event when the budget changed since it was made."""
        saved = state.get("time_plan")
        if not saved or self.max_minutes is None:
            return None
        plan = TimePlan(**saved)
        if plan.budget_minutes == self.max_minutes:
            self.plan = plan
            return None
        return {"event": "replan", "reason": f"max_minutes changed from {plan.budget_minutes} to {self.max_minutes}",
                "previous_total_steps": plan.total_steps}

    def describe(self) -> str:
        if self.plan:
            p = self.plan
            again = f", re-planned {p.replans}x from the pace of later steps" if p.replans else ""
            evals = f"evaluating every {p.eval_every} steps" if p.eval_every <= p.total_steps else "evaluating at the end"
            return (f"planned {p.total_steps} steps for {p.budget_minutes:g} minutes at step {p.planned_at_step} "
                    f"({p.step_seconds:.2f} s a step, {p.eval_seconds:.0f} s an evaluation, {evals}{again})")
        if self.needs_plan():
            return f"length to be planned from the first steps' times ({self.max_minutes:g} minutes)"
        return f"{self.total_steps} steps"


def seconds_for(n: int, step_seconds: float, eval_seconds: float, eval_every: int, done: int) -> float:
    """Wall time of `n` more steps after `done`: the steps, an evaluation every `eval_every`-th step and one at the end."""
    return n * step_seconds + ((done + n) // eval_every - done // eval_every + 1) * eval_seconds


def spaced_evaluations(budget_seconds: float, remaining: float, step_seconds: float, eval_seconds: float,
                       done: int) -> int:
    """Steps between evaluations so that those on the way cost at most `EVAL_SHARE` of the budget.

    With no time for even one, the spacing is longer than the run: the only evaluation is the one at
    the end."""
    on_the_way = int(EVAL_SHARE * budget_seconds / eval_seconds)
    steps = done + max(1, int((remaining - (on_the_way + 1) * eval_seconds) / step_seconds))
    return max(1, math.ceil(steps / (on_the_way + 1))) if on_the_way else steps + 1


def steps_that_fit(seconds: float, step_seconds: float, eval_seconds: float, eval_every: int, done: int) -> int:
    """The most steps after `done` whose `seconds_for` fits in `seconds` (at least one step)."""
    n = int((seconds - eval_seconds) / (step_seconds + eval_seconds / eval_every)) + 1  # just above the answer
    while n > 1 and seconds_for(n, step_seconds, eval_seconds, eval_every, done) > seconds:
        n -= 1  # the time grows with n: step down to the largest that fits
    return max(1, n)


def _test_step_seconds() -> float | None:
    """TEST-ONLY (as train/faults.py): SELFSUP_TEST_STEP_SECONDS fixes the timed step length, so
    that two runs make the same plan and their weights can be compared bit for bit."""
    value = os.environ.get("SELFSUP_TEST_STEP_SECONDS")
    return float(value) if value else None
