"""`lr = "auto"`: a short learning-rate range test on the base before continued pretraining.

The right peak rate for continuing a base depends on the base, the corpus and the budget, and a
wrong one is costly either way: too low and the run barely moves (the usual 5e-5 recipe), too high
and it forgets general ability. So before training, a few candidate peaks are each tried for a
few steps from the same starting weights, on the same batches, and scored by the trade-off probe
(evaluation/during_training.py): held-out domain bits per byte, and general bits per byte when
`[eval] texts` names general text. The chosen rate is the candidate with the largest domain gain
whose general-text change stays within `FORGETTING_LIMIT`, extrapolated from the test's steps to
the run's. Without general text nothing can say what is forgotten, and the default rate (1e-4) is kept.

The test costs `steps × len(candidates)` optimizer steps plus one probe per candidate (about 10% of
a 17-minute CPU budget on a 135M base); the weights are restored afterwards and training starts
from the base with a fresh optimizer. The result is written to `lr_search.json` in the run
directory and kept in every checkpoint, so a resumed run never searches again; a run killed during
the search searches again from scratch and (on CPU) finds the same rate.
"""

from __future__ import annotations

import time
from typing import Any

import torch

AUTO = "auto"
STEPS = 6  # per candidate (fewer when the run's whole length is short: at most ~10% of it in all)
CANDIDATES = (3e-5, 1e-4, 3e-4)  # around the continued-pretraining default (1e-4), a factor ~3 apart
FORGETTING_LIMIT = 0.02  # relative rise of general bits per byte allowed by the end of the run
FALLBACK = 1e-4  # no general text to measure forgetting on: the default rate (config.CONTINUE_LR)


def search_lr(
    run_step, restore, probe, *, steps: int, planned_steps, candidates: tuple[float, ...] = CANDIDATES
) -> dict[str, Any]:
    """Try each candidate for `steps` steps from the same start; return the choice and every score.

    `run_step(lr, i)` makes one update at rate `lr` on the i-th test batch; `restore()` puts the
    starting weights back and gives a fresh optimizer; `probe()` → {"domain_bpb": …, "general_bpb": …};
    `planned_steps()` → the run's length in steps, asked after the test (a time budget needs its timings).
    """
    started = time.perf_counter()
    base = probe()
    rows = []
    for lr in candidates:
        restore()
        for i in range(steps):
            run_step(lr * min(1.0, (i + 1) / 2), i)  # two steps of warmup: Adam's moments settle
        rows.append({"lr": lr, **probe()})
    restore()
    planned = planned_steps()
    chosen, reason = choose(base, rows, steps=steps, planned_steps=planned)
    return {"chosen": chosen, "reason": reason, "base": base, "candidates": rows, "steps_per_candidate": steps,
            "planned_steps": planned, "forgetting_limit": FORGETTING_LIMIT,
            "seconds": time.perf_counter() - started}


def choose(base: dict[str, float], rows: list[dict[str, Any]], *, steps: int, planned_steps: int) -> tuple[float, str]:
    """The largest domain gain among candidates whose extrapolated forgetting is within the limit.

    Forgetting grows with the number of updates; the test's is scaled by planned / test steps
    (linear: pessimistic, since the cooldown recovers some), so a rate that already forgets in a
    few steps is not picked for a long run.
    """
    if "domain_bpb" not in base:
        return FALLBACK, "no held-out domain sample to score the candidates on: the default rate"
    if "general_bpb" not in base:
        return FALLBACK, "no general text ([eval] texts) to measure forgetting on: the default rate"
    scale = max(1.0, planned_steps / max(1, steps))
    allowed = []
    for row in rows:
        row["domain_gain"] = (base["domain_bpb"] - row["domain_bpb"]) / base["domain_bpb"]
        row["forgetting"] = (row["general_bpb"] - base["general_bpb"]) / base["general_bpb"]
        row["forgetting_extrapolated"] = max(0.0, row["forgetting"]) * scale
        if row["forgetting_extrapolated"] <= FORGETTING_LIMIT:
            allowed.append(row)
    if not allowed:
        lowest = min(rows, key=lambda r: r["lr"])
        return lowest["lr"], "every candidate forgets beyond the limit: the lowest rate"
    best = max(allowed, key=lambda r: r["domain_gain"])
    return best["lr"], (f"largest domain gain ({best['domain_gain']:.1%} in {steps} steps) within the forgetting "
                        f"limit ({best['forgetting_extrapolated']:+.1%} extrapolated to {planned_steps} steps)")


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def restore_into(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(saved[k])
