"""lr = "auto": a short range test on the base picks the peak rate with the best domain gain within the
forgetting limit; the choice is recorded and kept across a resume."""

from __future__ import annotations

import json

import pytest

from selfsup.config import apply_continue_defaults, recipe_from_dict
from selfsup.errors import ConfigError
from selfsup.train import find_latest, train
from selfsup.train.lr_search import CANDIDATES, FALLBACK, FORGETTING_LIMIT, choose
from tests.conftest import small_recipe, write_reference_docs
from tests.models.test_lora import tiny_base
from tests.train.conftest import die_after_first_save, same_weights, weights

BASE = {"domain_bpb": 1.0, "general_bpb": 1.0}


def _rows(*scores):
    return [{"lr": lr, "domain_bpb": d, "general_bpb": g} for lr, d, g in scores]


def test_choice_is_the_largest_domain_gain_within_the_extrapolated_forgetting_limit():
    """1e-3 gains most but its forgetting, scaled from 6 test steps to 60, breaks the limit; 3e-4's does not."""
    rows = _rows((1e-4, 0.97, 1.000), (3e-4, 0.93, 1.001), (1e-3, 0.90, 1.004))
    lr, reason = choose(BASE, rows, steps=6, planned_steps=60)
    assert lr == 3e-4 and "within the forgetting limit" in reason
    assert rows[2]["forgetting_extrapolated"] == pytest.approx(0.04) and 0.04 > FORGETTING_LIMIT
    assert choose(BASE, rows, steps=6, planned_steps=6)[0] == 1e-3  # a run as short as the test: no scaling


def test_without_a_general_set_or_within_no_limit_the_choice_is_safe():
    """No general text: forgetting cannot be measured, the default rate; every candidate over the limit: the lowest."""
    assert choose({"domain_bpb": 1.0}, _rows((1e-3, 0.5, 1.0)), steps=6, planned_steps=60)[0] == FALLBACK
    rows = _rows((1e-4, 0.97, 1.01), (3e-4, 0.93, 1.02))
    assert choose(BASE, rows, steps=6, planned_steps=60) == (1e-4, "every candidate forgets beyond the limit: the lowest rate")


def test_auto_needs_a_base():
    with pytest.raises(ConfigError, match='lr = "auto"'):
        recipe_from_dict({"train": {"lr": "auto"}})


@pytest.fixture(scope="module")
def auto_run(prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    recipe = small_recipe([prepared["docs"]], max_steps=60, precision="fp32", eval_every=100, lr="auto",
                          checkpoint_every_steps=30, compile=False)  # eager: bitwise resume
    recipe.model.base = tiny_base(prepared["tokenizer"], root / "base")
    recipe.eval.texts = [write_reference_docs(root / "general", n=5)]
    recipe.eval.during_training_tokens = 256
    recipe = apply_continue_defaults(recipe)
    return root, recipe


def test_auto_lr_picks_a_candidate_records_it_and_trains_with_it(prepared, auto_run):
    """The range test scores every candidate, the run trains at the chosen peak,
    and run.json, lr_search.json and metrics.jsonl record it."""
    root, recipe = auto_run
    summary = train(prepared["shards"], prepared["tokenizer"], root / "run", recipe, fingerprint="fp")
    search = json.loads((root / "run" / "lr_search.json").read_text())
    assert [c["lr"] for c in search["candidates"]] == list(CANDIDATES)
    assert all("domain_bpb" in c and "general_bpb" in c for c in search["candidates"])
    assert search["steps_per_candidate"] == 2 and search["planned_steps"] == 60
    assert summary["lr"] == search["chosen"] == summary["lr_search"]["chosen"]
    lrs = [r["lr"] for r in map(json.loads, (root / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert max(lrs) == pytest.approx(search["chosen"]) and len(lrs) == 60


def test_a_resumed_auto_run_keeps_its_choice_and_ends_with_the_same_weights(prepared, auto_run, monkeypatch):
    """Killed after its first checkpoint, the run resumes with the recorded rate (no second search)
    and ends bit for bit where the uninterrupted run ended."""
    root, recipe = auto_run
    straight = root / "straight"
    train(prepared["shards"], prepared["tokenizer"], straight, recipe, fingerprint="fp")
    resumed = root / "resumed"
    die_after_first_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(prepared["shards"], prepared["tokenizer"], resumed, recipe, fingerprint="fp")
    assert find_latest(resumed)[0].name == "step-30"
    (resumed / "lr_search.json").unlink()  # only the checkpoint's record may be used
    train(prepared["shards"], prepared["tokenizer"], resumed, recipe, fingerprint="fp")
    assert not (resumed / "lr_search.json").exists()
    assert same_weights(weights(straight), weights(resumed))
