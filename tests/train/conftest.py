"""A finished short run with three checkpoints, copied by the tests that damage or resume it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup.train import find_latest, train
from tests.conftest import small_recipe


def checkpointed_recipe(prepared, **train_settings):
    """fp32 (exact comparisons), a checkpoint every 2 steps, all three kept."""
    settings = dict(max_steps=6, precision="fp32", checkpoint_every_steps=2, keep_checkpoints=3, eval_every=100)
    return small_recipe([prepared["docs"]], **{**settings, **train_settings})


def weights(run: Path) -> dict[str, torch.Tensor]:
    latest, _ = find_latest(run)
    return load_file(latest / "model.safetensors")


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def die_after_first_save(monkeypatch) -> None:
    """The next training run 'crashes' (KeyboardInterrupt) right after committing its first checkpoint;
    runs after it save normally."""
    import selfsup.train.loop as loop

    original = loop.save_checkpoint

    def save_then_die(*args, **kwargs):
        original(*args, **kwargs)
        monkeypatch.setattr(loop, "save_checkpoint", original)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)


@pytest.fixture(scope="session")
def finished_run(prepared, tmp_path_factory) -> Path:
    """checkpoints/step-2, step-4, step-6 of a 6-step run; copy it before changing anything."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(prepared["shards"], prepared["tokenizer"], run, checkpointed_recipe(prepared), fingerprint="fp")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4", "step-6"]
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy
