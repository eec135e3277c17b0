"""The recipe: typos and wrong types are errors that name the key and the fix."""

from pathlib import Path

import pytest

from selfsup.config import Recipe, load_recipe, recipe_from_dict, settings_hash
from selfsup.errors import ConfigError


def test_unknown_key_names_key_allowed_keys_and_closest_match():
    """A typo in a key is refused, with the section, the allowed keys and a suggestion."""
    with pytest.raises(ConfigError) as err:
        recipe_from_dict({"train": {"max_step": 10}})
    msg = str(err.value)
    assert "[train] max_step" in msg and "max_steps" in msg and "did you mean 'max_steps'" in msg


def test_unknown_section_is_refused():
    """A misspelt section name does not silently fall back to defaults."""
    with pytest.raises(ConfigError, match=r"unknown section \[trian\].*did you mean 'train'"):
        recipe_from_dict({"trian": {"max_steps": 10}})


def test_wrong_type_and_bad_choice_are_explained():
    """A wrong type or a value outside a choice names the key and shows what was given."""
    with pytest.raises(ConfigError, match=r"\[train\] batch_size.*'many'"):
        recipe_from_dict({"train": {"batch_size": "many"}})
    with pytest.raises(ConfigError, match=r"\[objective\] name.*'gpt'"):
        recipe_from_dict({"objective": {"name": "gpt"}})


def test_mask_shares_must_fit():
    """mask_replace + random_replace above 1 is impossible and refused."""
    with pytest.raises(ConfigError, match="mask_replace \\+ random_replace"):
        recipe_from_dict({"objective": {"mask_replace": 0.8, "random_replace": 0.3}})


def test_paths_are_relative_to_the_recipe(tmp_path: Path):
    """Recipe paths resolve against the recipe's folder, so a recipe moves with its data."""
    (tmp_path / "r").mkdir()
    recipe_path = tmp_path / "r" / "recipe.toml"
    recipe_path.write_text('[corpus]\nsources = ["docs", "/abs/x"]\n[tokenizer]\nfrom = "base"\n')
    r = load_recipe(recipe_path)
    assert r.corpus.sources == [tmp_path / "r" / "docs", Path("/abs/x")]
    assert r.tokenizer.from_dir == tmp_path / "r" / "base"


def test_invalid_toml_and_missing_file(tmp_path: Path):
    """A broken or missing recipe is a ConfigError (exit code 2), not a traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nmax_steps = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.toml")


def test_settings_hash_is_stable_and_sensitive():
    """Same settings → same hash; one changed value → another hash (drives stage skipping)."""
    a, b = Recipe(), Recipe()
    assert settings_hash(a.train) == settings_hash(b.train)
    b.train.lr = 1e-4
    assert settings_hash(a.train) != settings_hash(b.train)


def test_shipped_recipes_are_valid():
    """Every recipe under recipes/ (and the packaged demo recipe) validates."""
    root = Path(__file__).resolve().parents[1] / "recipes"
    recipes = sorted(root.glob("*.toml"))
    assert recipes, "recipes/ should hold example recipes"
    for path in recipes:
        load_recipe(path)
    from selfsup.demo import demo_recipe

    assert demo_recipe().objective.name == "clm"
    scratch = demo_recipe(scratch=True)
    assert scratch.objective.name == "clm" and scratch.model.base is None and scratch.model.preset == "tiny"
