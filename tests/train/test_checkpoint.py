"""Checkpoints: a damaged or unfinished newest one is detected, named and skipped for the previous
one; a full disk leaves the previous one valid; the save cadence and --fresh do what they say."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from selfsup.errors import StageFailure
from selfsup.manifest import verify_manifest
from selfsup.train import find_latest, train
from tests.train.conftest import checkpointed_recipe, same_weights, weights


def train_steps(run: Path) -> list[int]:
    """Steps of the training lines of metrics.jsonl (validation lines left out)."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["step"] for x in lines if "loss" in x]


def said(capsys) -> str:
    """What the run printed, with the console's line wrapping undone."""
    return capsys.readouterr().err.replace("\n", "")


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _empty(step: Path) -> None:
    shutil.rmtree(step)
    step.mkdir()


def _leftover_partial(step: Path) -> None:
    """A newer save that was killed before its rename: step-8.partial with every file, even the manifest."""
    shutil.copytree(step, step.with_name("step-8.partial"))


DAMAGE = {
    "truncated file": (lambda step: _truncate(step / "model.safetensors"), "model.safetensors has"),
    "flipped byte": (lambda step: _flip_byte(step / "optimizer.safetensors"), "optimizer.safetensors does not match its sha256"),
    "missing manifest": (lambda step: (step / "MANIFEST.json").unlink(), "MANIFEST.json is missing"),
    "empty directory": (_empty, "empty directory"),
    "leftover partial": (_leftover_partial, "step-8.partial: an unfinished save"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_newest_checkpoint_is_reported_and_skipped(prepared, finished_run, run_copy, capsys, damage):
    """The run says what was wrong, resumes from the checkpoint before, removes the bad one, and
    redoes the lost steps to the same weights as the undamaged run."""
    spoil, reason = DAMAGE[damage]
    spoil(run_copy / "checkpoints" / "step-6")
    latest, problems = find_latest(run_copy)
    expected_start = "step-6" if damage == "leftover partial" else "step-4"
    assert latest.name == expected_start and any(reason in p for p in problems), problems

    summary = train(prepared["shards"], prepared["tokenizer"], run_copy, checkpointed_recipe(prepared), fingerprint="fp")
    err = said(capsys)
    assert "skipping checkpoint" in err and reason in err, err
    assert f"resuming from {run_copy / 'checkpoints' / expected_start}" in err
    assert summary["resumed_from_step"] == int(expected_start.split("-")[1])
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == ["step-2", "step-4", "step-6"]
    assert same_weights(weights(run_copy), weights(finished_run))
    assert train_steps(run_copy) == list(range(1, 7))


def test_all_checkpoints_damaged_starts_over(prepared, finished_run, run_copy, capsys):
    for step in (run_copy / "checkpoints").iterdir():
        (step / "MANIFEST.json").unlink()
    summary = train(prepared["shards"], prepared["tokenizer"], run_copy, checkpointed_recipe(prepared), fingerprint="fp")
    assert "no usable checkpoint left; starting from step 0" in said(capsys)
    assert summary["resumed_from_step"] is None
    assert same_weights(weights(run_copy), weights(finished_run))


def test_disk_full_during_save_keeps_the_previous_checkpoint(prepared, finished_run, tmp_path, monkeypatch):
    """ENOSPC in the middle of writing step-4 (test hook): the run stops naming the path and the
    space needed, step-2 still verifies, no half-written directory is left, and the next run
    resumes from step-2 to the weights of a run that never failed."""
    run = tmp_path / "run"
    monkeypatch.setenv("SELFSUP_TEST_ENOSPC_AT_SAVE", "4")
    with pytest.raises(StageFailure) as failure:
        train(prepared["shards"], prepared["tokenizer"], run, checkpointed_recipe(prepared), fingerprint="fp")
    message = str(failure.value)
    assert f"disk full while writing checkpoint {run / 'checkpoints' / 'step-4'}" in message
    assert "MiB are free" in message and "needs about" in message and "step-2 is intact" in message
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2"]
    assert verify_manifest(run / "checkpoints" / "step-2", manifest_name="MANIFEST.json")[0]

    monkeypatch.delenv("SELFSUP_TEST_ENOSPC_AT_SAVE")
    summary = train(prepared["shards"], prepared["tokenizer"], run, checkpointed_recipe(prepared), fingerprint="fp")
    assert summary["resumed_from_step"] == 2
    assert same_weights(weights(run), weights(finished_run))


def test_not_enough_free_space_is_refused_before_writing(prepared, tmp_path, monkeypatch):
    """The free-space check runs before a byte is written and says how much is needed."""
    import selfsup.train.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))
    run = tmp_path / "run"
    with pytest.raises(StageFailure, match=r"not enough disk space for a checkpoint in .*: \d+ MiB needed, 0 MiB free"):
        train(prepared["shards"], prepared["tokenizer"], run, checkpointed_recipe(prepared, max_steps=1), fingerprint="fp")
    assert not any((run / "checkpoints").iterdir())


def test_checkpoint_every_minutes_saves_on_time(prepared, tmp_path):
    """With a (tiny) time interval and no step interval, every step is past the deadline; the newest
    `keep_checkpoints` survive. (Saving every N steps is shown by the `finished_run` fixture.)"""
    recipe = checkpointed_recipe(prepared, max_steps=4, checkpoint_every_steps=None,
                                 checkpoint_every_minutes=1e-7, keep_checkpoints=3)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-2", "step-3", "step-4"]


def _cli(monkeypatch, *argv: str) -> int:
    """Run the real `selfsup` entry point in-process; returns its exit code."""
    from selfsup.cli import main

    monkeypatch.setattr(sys, "argv", ["selfsup", *map(str, argv)])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _recipe_file(path: Path, **train_settings) -> Path:
    lines = ["[train]", "precision = \"fp32\"", "batch_size = 4", "warmup_steps = 1", "eval_every = 100",
             "progress = false", *(f"{k} = {json.dumps(v)}" for k, v in train_settings.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fresh_flag_starts_over(prepared, tmp_path, monkeypatch, capsys):
    """Re-running `selfsup train` resumes by itself; with --fresh it starts again from step 0."""
    recipe = _recipe_file(tmp_path / "r.toml", max_steps=2)
    args = ["train", prepared["shards"], "--tokenizer", prepared["tokenizer"], "--out", tmp_path / "run", "--config", recipe]
    assert _cli(monkeypatch, *args) == 0
    assert _cli(monkeypatch, *args) == 0
    assert "resuming from" in said(capsys)
    assert _cli(monkeypatch, *args, "--fresh") == 0
    assert "resuming" not in said(capsys)
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["resumed_from_step"] is None and summary["steps"] == 2
    assert train_steps(tmp_path / "run") == [1, 2]
