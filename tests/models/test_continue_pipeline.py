"""The continued-pretraining road through `run_pipeline`: base + extend + LoRA + replay, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydoc_data.topics import topics

from selfsup.config import TokenizerConfig
from selfsup.errors import ConfigError
from selfsup.pipeline import build_tokenizer, run_pipeline
from selfsup.tokens import train_tokenizer
from tests.conftest import small_recipe
from tests.corpus_writer import write_parquet_corpus
from tests.models.test_lora import tiny_base


def _write(folder: Path, names: list[str], chars: int) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.txt").write_text(topics[name][:chars], encoding="utf-8")
    return folder


@pytest.mark.slow
def test_base_extend_lora_replay_pipeline(tmp_path):
    """One recipe with a base, `extend`, LoRA and replay runs every stage (replay is its own stage), records
    the fertility gain and the continued-pretraining LR, exports a merged model, and a rerun skips it all."""
    names = sorted(topics)
    docs = _write(tmp_path / "docs", names[:40], 6000)
    general = _write(tmp_path / "general", names[60:], 3000)
    write_parquet_corpus(tmp_path / "base-corpus", [topics[n] for n in names[40:79]])
    train_tokenizer(tmp_path / "base-corpus", tmp_path / "base-tokenizer", TokenizerConfig(vocab_size=500), "x")
    recipe = small_recipe([docs], max_steps=4, precision="fp32")
    recipe.corpus.workers = 0
    recipe.model.base = tiny_base(tmp_path / "base-tokenizer", tmp_path / "base")
    recipe.model.lora, recipe.model.lora_rank = True, 4
    recipe.tokenizer.extend = 20
    recipe.train.replay_sources, recipe.train.replay_fraction = [general], 0.2
    work = tmp_path / "work"

    first = run_pipeline(recipe, work)
    assert set(first["status"].values()) == {"ran"} and "replay" in first["status"]
    extension = json.loads((work / "tokenizer" / "manifest.json").read_text())["extension"]
    assert extension["added"] == 20 and extension["fertility_after"] < extension["fertility_before"]
    assert json.loads((work / "run" / "run.json").read_text())["recipe"]["train"]["lr"] == 1e-3  # LoRA default
    assert json.loads((work / "model" / "manifest.json").read_text())["merged_lora"] is True
    assert (work / "replay" / "shards" / "manifest.json").is_file()
    assert set(run_pipeline(recipe, work)["status"].values()) == {"skipped"}


def test_extend_needs_a_reused_tokenizer(prepared, tmp_path):
    """`[tokenizer] extend` without a base model or `from` tokenizer is a config error that says what to set."""
    recipe = small_recipe([prepared["docs"]])
    recipe.tokenizer.extend = 10
    with pytest.raises(ConfigError, match=r"\[model\] base"):
        build_tokenizer(prepared["corpus"], tmp_path / "tokenizer", recipe, "fp")
