"""Replay: general text mixed into training at the configured fraction, deterministically, resumably."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydoc_data.topics import topics
from safetensors.torch import load_file

from selfsup.errors import UsageError
from selfsup.pack import TokenShards, pack_corpus
from selfsup.train import find_latest, train
from selfsup.train.data_order import epoch_permutation
from selfsup.train.replay import ReplayMix, replay_shards_dir, training_blocks
from tests.conftest import small_recipe
from tests.corpus_writer import write_parquet_corpus
from tests.train.conftest import die_after_first_save


@pytest.fixture(scope="module")
def with_replay(prepared, tmp_path_factory) -> Path:
    """Domain shards (the prepared ones) with replay text packed beside them, as `selfsup run` lays them out."""
    root = tmp_path_factory.mktemp("replay")
    shards = root / "shards"
    shutil.copytree(prepared["shards"], shards)
    general = [topics[name][:3000] for name in sorted(topics)[-40:]]  # other topics than the domain's first 80
    corpus = write_parquet_corpus(root / "replay" / "corpus", general)
    pack_corpus(corpus, prepared["tokenizer"], replay_shards_dir(shards), small_recipe([]).pack, "fp-replay")
    return shards


def _recipe(prepared, **train_settings):
    recipe = small_recipe([prepared["docs"]], **{"precision": "fp32", "eval_every": 100, **train_settings})
    recipe.train.replay_sources = [prepared["docs"]]  # any folder: the pipeline packs it; here it is packed already
    recipe.train.replay_fraction = 0.25
    return recipe


def test_fraction_respected_and_deterministic(with_replay):
    """Each epoch holds replay blocks in the configured share; rows map to the right domain or replay
    block, spread over the whole replay set; two mixes of the same inputs give the same blocks."""
    domain = TokenShards(with_replay, "train")
    replay = TokenShards(replay_shards_dir(with_replay), "train")
    mix = ReplayMix(domain, replay, 0.25)
    assert mix.seq_len == domain.seq_len and len(mix) == len(domain) + round(len(domain) / 3)
    epoch = epoch_permutation(0, 0, len(mix))
    share = mix.is_replay(epoch).mean()
    assert abs(share - 0.25) <= 1 / len(mix)
    rows = epoch[:64]
    blocks = mix.blocks(rows)
    assert np.array_equal(blocks, ReplayMix(domain, replay, 0.25).blocks(rows))
    for row, block in zip(rows, blocks):
        source = replay.block(int(mix.replay_block(row - len(domain)))) if row >= len(domain) else domain.block(int(row))
        assert np.array_equal(block, source)
    used = {int(mix.replay_block(j)) for j in range(mix.n_replay)}
    assert len(used) == min(len(replay), mix.n_replay) and max(used) >= len(replay) // 2


def test_training_with_replay_resumes_exactly(prepared, with_replay, tmp_path, monkeypatch):
    """A replay run that dies right after its step-2 checkpoint and is run again ends with the weights of an
    uninterrupted run; the loop really reads the mix (without the packed replay text it refuses to start)."""
    recipe = _recipe(prepared, max_steps=4, checkpoint_every_steps=2)
    assert isinstance(training_blocks(with_replay, recipe.train), ReplayMix)
    train(with_replay, prepared["tokenizer"], tmp_path / "straight", recipe, fingerprint="fp")
    die_after_first_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(with_replay, prepared["tokenizer"], tmp_path / "resumed", recipe, fingerprint="fp")
    assert train(with_replay, prepared["tokenizer"], tmp_path / "resumed", recipe, fingerprint="fp")["resumed_from_step"] == 2
    a = load_file(find_latest(tmp_path / "straight")[0] / "model.safetensors")
    b = load_file(find_latest(tmp_path / "resumed")[0] / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    with pytest.raises(UsageError, match="replay"):
        train(prepared["shards"], prepared["tokenizer"], tmp_path / "no-replay-text", recipe, fingerprint="fp")
