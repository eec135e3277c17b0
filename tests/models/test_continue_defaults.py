"""Continued-pretraining defaults: lower LR, short warmup, a planned schedule, where the recipe is silent."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfsup.config import load_recipe, recipe_from_dict

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_defaults_fill_only_unset_keys():
    """With a base, unset lr / warmup_steps take the continued-pretraining values (LoRA: a larger lr) and the
    embeddings train at the same rate; keys the recipe sets are kept; a from-scratch recipe keeps the
    from-scratch defaults."""
    full = recipe_from_dict({"model": {"base": "/base"}})
    assert (full.train.lr, full.train.warmup_steps, full.train.embedding_lr) == (1e-4, 10, None)
    lora = recipe_from_dict({"model": {"base": "/base", "lora": True}})
    assert (lora.train.lr, lora.train.embedding_lr) == (1e-3, None)
    mine = recipe_from_dict({"model": {"base": "/base"}, "train": {"lr": 5e-5, "warmup_steps": 0, "embedding_lr": 5e-6}})
    assert (mine.train.lr, mine.train.warmup_steps, mine.train.embedding_lr) == (5e-5, 0, pytest.approx(5e-6))
    scratch = recipe_from_dict({})
    assert (scratch.train.lr, scratch.train.warmup_steps, scratch.train.embedding_lr) == (3e-3, 20, None)
    # a run.json round trip (the recipe as recorded) gives the same values
    again = recipe_from_dict(lora.model_dump(mode="json", by_alias=True))
    assert again.train == lora.train


def test_continue_recipe_ships_and_gets_the_defaults():
    """recipes/continue.toml validates and, leaving lr to the code, gets the continued-pretraining lr."""
    recipe = load_recipe(RECIPES / "continue.toml")
    assert recipe.model.base is not None and recipe.train.lr == 1e-4 and recipe.train.warmup_steps == 10


def test_a_short_time_budget_leaves_compile_to_the_device():
    """A continued run compiles by default, but a cold compile costs minutes per objective on the CPU: under
    CONTINUE_COMPILE_MINUTES per objective, compile stays unset (eager on the CPU, compiled on a GPU), a mix
    counts each objective, and a recipe that sets compile keeps it."""
    def compile_of(train: dict, objective: dict | None = None):
        recipe = recipe_from_dict({"model": {"base": "/base"}, "train": train, "objective": objective or {"name": "clm"}})
        return recipe.train.compile if "compile" in recipe.train.model_fields_set else "unset"

    assert compile_of({}) is True and compile_of({"max_minutes": 4}) is True and compile_of({"max_steps": 10}) is True
    assert compile_of({"max_minutes": 3}) == "unset" and compile_of({"max_minutes": 3, "compile": True}) is True
    mix = {"mix": {"clm": 0.5, "fim": 0.5}}
    assert compile_of({"max_minutes": 7}, mix) == "unset" and compile_of({"max_minutes": 8}, mix) is True
    assert compile_of({"max_minutes": 3}, {"name": "contrastive"}) is False  # encoders: eager at any budget
