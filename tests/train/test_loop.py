"""The training loop: it learns, it is deterministic, it resumes exactly, and it logs every step once."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup.train import find_latest, train
from selfsup.errors import UsageError
from tests.conftest import small_recipe
from tests.train.conftest import die_after_first_save


def _weights(run: Path) -> dict[str, torch.Tensor]:
    latest, _ = find_latest(run)
    return load_file(latest / "model.safetensors")


def _metric_steps(run: Path) -> list[int]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["step"] for x in lines if "loss" in x]


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_loss_falls_and_run_is_recorded(prepared, tmp_path, objective):
    """A short run lowers the training loss, writes metrics for every step, validation loss,
    run.json and a verified final checkpoint."""
    recipe = small_recipe([prepared["docs"]], objective, max_steps=30, lr=1e-2, batch_size=8)
    summary = train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert _metric_steps(tmp_path / "run") == list(range(1, 31))
    assert sum(losses[-10:]) / 10 < sum(losses[:5]) / 5 - 0.3
    assert any("val_loss" in x for x in lines)
    assert summary["steps"] == 30 and summary["tokens"] == 30 * 8 * 64
    assert json.loads((tmp_path / "run" / "run.json").read_text())["objective"] == objective
    assert find_latest(tmp_path / "run")[0].name == "step-30"


def test_same_seed_same_weights_bitwise(prepared, tmp_path):
    """Two runs of the same recipe and seed end with identical weights on CPU."""
    recipe = small_recipe([prepared["docs"]], max_steps=6, precision="fp32")
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "a", recipe, fingerprint="fp")
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "b", recipe, fingerprint="fp")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_from_checkpoint_matches_uninterrupted_run(prepared, tmp_path, precision, monkeypatch):
    """Stopping at step 5 (checkpoint) and re-running to step 10 gives the weights of a straight
    10-step run, bit for bit, with gradient accumulation and dropout on; metrics have each step once.
    Also with bf16 autocast: on CPU its kernels are deterministic too (checked here, not assumed).
    Real SIGKILLs are in tests/test_resume_story.py."""
    straight = small_recipe([prepared["docs"]], max_steps=10, precision=precision, grad_accum=2)
    straight.model.dropout = 0.1
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "straight", straight, fingerprint="fp")

    # First half: same recipe, but the process "dies" after step 5 — emulated by a run whose
    # time budget ends there; the fingerprint ignores max_minutes, so it resumes the same run.
    half = straight.model_copy(deep=True)
    half.train.checkpoint_every_steps = 5
    die_after_first_save(monkeypatch)  # dies right after committing step-5
    with pytest.raises(KeyboardInterrupt):
        train(prepared["shards"], prepared["tokenizer"], tmp_path / "resumed", half, fingerprint="fp")
    assert find_latest(tmp_path / "resumed")[0].name == "step-5"
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "resumed", half, fingerprint="fp")
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metric_steps(tmp_path / "resumed") == list(range(1, 11))


def test_checkpoints_from_other_settings_are_not_resumed(prepared, tmp_path):
    """A run directory holding another recipe's checkpoints is refused unless --fresh."""
    recipe = small_recipe([prepared["docs"]], max_steps=2)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="one")
    with pytest.raises(UsageError, match="--fresh"):
        train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="two")
    summary = train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="two", fresh=True)
    assert summary["steps"] == 2 and summary["resumed_from_step"] is None


@pytest.mark.slow
def test_compiled_cpu_training_matches_eager(prepared, tmp_path, capsys):
    """`compile = true` on the CPU (short-block attention, train/hardware.py's allocator setting) trains
    the same model as the eager loop: the first losses agree to fp32 rounding and the run says which
    attention it used; the exported checkpoint is a plain SDPA model."""
    eager = small_recipe([prepared["docs"]], max_steps=3, precision="fp32")
    compiled = eager.model_copy(deep=True)
    compiled.train.compile = True
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "eager", eager, fingerprint="fp")
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "compiled", compiled, fingerprint="fp")
    assert "compiled (short-block attention)" in capsys.readouterr().err  # the console writes to stderr

    def losses(run):
        return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]

    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4)
    latest, _ = find_latest(tmp_path / "compiled")
    assert "selfsup" not in (latest / "config.json").read_text()


def test_compile_without_a_cpp_compiler_trains_uncompiled(prepared, tmp_path, capsys, monkeypatch):
    """`compile = true` on a CPU machine with no C++ compiler (here: CXX names one that does not exist)
    says so in one line and trains uncompiled, instead of failing inside torch at the first step."""
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    recipe = small_recipe([prepared["docs"]], max_steps=2)
    recipe.train.compile = True
    summary = train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    err = capsys.readouterr().err
    assert "no C++ compiler" in err and "training uncompiled" in err
    assert summary["steps"] == 2 and summary["compile"] is False


def test_activation_checkpointing_trains_to_the_same_weights(prepared, tmp_path):
    """The memory-saving mode recomputes activations instead of keeping them: same weights (fp32), and
    it does not change the run's fingerprint (a run may switch it on to resume on a smaller machine)."""
    plain = small_recipe([prepared["docs"]], max_steps=4, precision="fp32")
    saving = plain.model_copy(deep=True)
    saving.train.activation_checkpointing = True
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "plain", plain, fingerprint="fp")
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "saving", saving, fingerprint="fp")
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "saving")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
    from selfsup.train import train_fingerprint

    assert train_fingerprint(plain, "d", "t") == train_fingerprint(saving, "d", "t")


def test_the_activation_budget_is_set_while_training_only(prepared, tmp_path, monkeypatch):
    """The compiled step keeps `activation_memory_budget` of its activations (a tenth in memory-saving mode);
    torch's setting is process-wide, so it is back to its value once the run ends, and the budget is not
    part of the fingerprint."""
    import selfsup.train.loop as loop

    seen = []
    original = loop._train
    monkeypatch.setattr(loop, "_train", lambda *a, **k: seen.append(torch._functorch.config.activation_memory_budget)
                        or original(*a, **k))
    before = torch._functorch.config.activation_memory_budget
    recipe = small_recipe([prepared["docs"]], max_steps=1, activation_memory_budget=0.65)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "a", recipe, fingerprint="fp")
    saving = recipe.model_copy(deep=True)
    saving.train.activation_checkpointing = True
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "b", saving, fingerprint="fp")
    assert seen == [0.65, loop.MEMORY_SAVING_BUDGET]
    assert torch._functorch.config.activation_memory_budget == before
    from selfsup.train import train_fingerprint

    assert train_fingerprint(recipe, "d", "t") == train_fingerprint(small_recipe([prepared["docs"]], max_steps=1), "d", "t")


@pytest.mark.parametrize("compile_", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eager", "compiled"])
def test_packed_document_attention_trains_the_masked_model(prepared, tmp_path, capsys, monkeypatch, compile_):
    """Where the loop takes packed-document attention (long blocks; here lowered to the fixture's 64 tokens),
    it trains the model the dense document mask trains: the same losses to fp32 rounding, eager and
    compiled (the attention runs eagerly between compiled layers), with grad_accum and fim in a mix."""
    import selfsup.models.attention as attention

    masked = small_recipe([prepared["docs"]], max_steps=3, precision="fp32", grad_accum=2)
    masked.train.compile = compile_
    masked.objective.mix = {"clm": 0.5, "fim": 0.5}
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "masked", masked, fingerprint="fp")
    assert "packed-document" not in capsys.readouterr().err
    monkeypatch.setattr(attention, "PACKED_MIN_TOKENS_CPU", 64)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "packed", masked, fingerprint="fp")
    assert "packed-document attention (no T×T mask)" in capsys.readouterr().err

    def losses(run):
        return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]

    assert losses(tmp_path / "packed") == pytest.approx(losses(tmp_path / "masked"), rel=1e-5)
    assert json.loads((tmp_path / "packed" / "run.json").read_text())["mix"]["micro_batches"]["fim"] > 0


def test_compile_is_on_by_default_on_a_gpu_only():
    """Unset, `compile` is on for a GPU and off for a from-scratch CPU run; a recipe's value always wins."""
    from selfsup.config import TrainConfig
    from selfsup.train.loop import compile_on

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert compile_on(TrainConfig(), cuda) and not compile_on(TrainConfig(), cpu)
    assert not compile_on(TrainConfig(compile=False), cuda)
    assert compile_on(TrainConfig(compile=True), cpu)
