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
