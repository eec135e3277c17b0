"""LoRA continued pretraining: only the adapters (and, with an extended vocabulary, the embeddings)
change; checkpoints resume bitwise; the embeddings get their own, smaller learning rate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from selfsup.config import apply_continue_defaults
from selfsup.models import load_base_for_training
from selfsup.models.param_groups import optimizer_param_groups
from selfsup.pack import pack_corpus
from selfsup.tokens import load_tokenizer, reuse_tokenizer
from selfsup.tokens.extend import extend_tokenizer
from selfsup.train import find_latest, train
from tests.conftest import small_recipe
from tests.train.conftest import die_after_first_save


def tiny_base(tokenizer_dir: Path, out: Path) -> Path:
    """A tiny random Llama 'base model' for the prepared tokenizer, saved as a plain HF directory."""
    torch.manual_seed(0)
    tok = load_tokenizer(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def lora_recipe(prepared, base: Path, **train_settings):
    recipe = small_recipe([prepared["docs"]], **{"max_steps": 4, "precision": "fp32", "eval_every": 100, **train_settings})
    recipe.model.base = base
    recipe.model.lora = True
    recipe.model.lora_rank = 4
    recipe.model.lora_dropout = 0.1  # dropout on: resume must restore the RNG too
    return apply_continue_defaults(recipe)


@pytest.fixture(scope="module")
def base(prepared, tmp_path_factory) -> Path:
    return tiny_base(prepared["tokenizer"], tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def extended(prepared, tmp_path_factory) -> dict[str, Path]:
    """The prepared tokenizer extended with 16 corpus terms, and the corpus packed with it."""
    root = tmp_path_factory.mktemp("extended")
    reuse_tokenizer(prepared["tokenizer"], root / "tokenizer", fingerprint="x")
    extend_tokenizer(prepared["corpus"], root / "tokenizer", 16, fingerprint="x")
    recipe = small_recipe([prepared["docs"]])
    pack_corpus(prepared["corpus"], root / "tokenizer", root / "shards", recipe.pack, "fp-pack")
    return {"tokenizer": root / "tokenizer", "shards": root / "shards"}


def _base_key(key: str) -> str:
    return key.replace(".base_layer.", ".")


def test_only_adapters_change(prepared, base, tmp_path):
    """After LoRA training every base weight is bit-identical to the base model's, and the adapters moved;
    the continued-pretraining LoRA default lr (1e-3) filled the unset key, the set warmup was kept."""
    recipe = lora_recipe(prepared, base)
    assert (recipe.train.lr, recipe.train.warmup_steps, recipe.train.embedding_lr) == (1e-3, 2, None)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    trained = load_file(find_latest(tmp_path / "run")[0] / "model.safetensors")
    original = load_file(base / "model.safetensors")
    lora = [k for k in trained if "lora_" in k]
    assert lora and any("mlp" in k for k in lora)  # attention and MLP projections (Llama family default)
    assert any(not torch.all(trained[k] == 0) for k in lora if "lora_B" in k)  # B starts at zero, so it moved
    for key, value in trained.items():
        if "lora_" not in key:
            assert torch.equal(value, original[_base_key(key)]), key


def test_extended_vocabulary_trains_embeddings_at_their_own_rate(prepared, base, extended, tmp_path):
    """With an extended vocabulary the embeddings train too (new rows included), at embedding_lr; the
    transformer's own weights still do not change."""
    recipe = lora_recipe(prepared, base)
    recipe.train.embedding_lr = 2e-4
    train(extended["shards"], extended["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    trained = load_file(find_latest(tmp_path / "run")[0] / "model.safetensors")
    original = load_file(base / "model.safetensors")
    emb = trained["model.embed_tokens.weight"]
    assert emb.shape[0] == len(load_tokenizer(extended["tokenizer"])) > original["model.embed_tokens.weight"].shape[0]
    assert not torch.equal(emb[: original["model.embed_tokens.weight"].shape[0]], original["model.embed_tokens.weight"])
    for key, value in trained.items():
        if "lora_" not in key and "embed_tokens" not in key:
            assert torch.equal(value, original[_base_key(key)]), key

    model = load_base_for_training(recipe.model, "clm", extended["tokenizer"])
    groups = optimizer_param_groups(model, recipe.train)
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 1.0, pytest.approx(0.2)]
    assert groups[2]["params"] == [model.get_input_embeddings().weight]


def test_lora_run_resumes_bitwise(prepared, base, extended, tmp_path, monkeypatch):
    """A LoRA run (extended vocabulary, embedding group, dropout) that dies right after its step-2
    checkpoint and is run again ends with exactly the weights of an uninterrupted run (eager: compiled
    kernels are not bit-reproducible across processes, see train/loop.py)."""
    recipe = lora_recipe(prepared, base, max_steps=4, checkpoint_every_steps=2, compile=False)
    train(extended["shards"], extended["tokenizer"], tmp_path / "straight", recipe, fingerprint="fp")
    die_after_first_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(extended["shards"], extended["tokenizer"], tmp_path / "resumed", recipe, fingerprint="fp")
    summary = train(extended["shards"], extended["tokenizer"], tmp_path / "resumed", recipe, fingerprint="fp")
    assert summary["resumed_from_step"] == 2
    a = load_file(find_latest(tmp_path / "straight")[0] / "model.safetensors")
    b = load_file(find_latest(tmp_path / "resumed")[0] / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
