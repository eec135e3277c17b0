"""`selfsup demo`: the whole road on a sample corpus that ships with every Python.

The corpus is built at run time (never committed): the language reference from
`pydoc_data.topics` and the docstrings of the standard library, written as real .txt and .md
files that the ingest stage then reads like any user folder.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from selfsup.config import Recipe, recipe_from_dict
from selfsup.console import say
from selfsup.pipeline import run_pipeline
from selfsup.sample_corpus import build_sample_corpus


def demo_recipe() -> Recipe:
    text = resources.files("selfsup").joinpath("recipes/demo.toml").read_text(encoding="utf-8")
    return recipe_from_dict(tomllib.loads(text), origin="selfsup/recipes/demo.toml")


def run_demo(workdir: Path, *, fresh: bool = False) -> dict[str, Any]:
    workdir = Path(workdir)
    corpus_dir = build_sample_corpus(workdir / "sample-corpus")
    say(f"[bold]demo[/]: sample corpus in {corpus_dir}")
    recipe = demo_recipe()
    # The two parts, not the folder: its completion marker is not a document.
    recipe.corpus.sources = [(corpus_dir / "reference").resolve(), (corpus_dir / "stdlib").resolve()]
    return run_pipeline(recipe, workdir, fresh=fresh)
