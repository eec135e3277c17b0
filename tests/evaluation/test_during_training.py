"""The trade-off probe: fixed, capped samples of domain and general text, scored in bits per byte."""

import math
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from selfsup.evaluation.during_training import TradeoffProbe
from selfsup.pack import TokenShards
from selfsup.tokens import load_tokenizer, token_byte_lengths
from tests.conftest import small_recipe


def test_probe_scores_capped_samples_and_uniform_model_pays_log2_v(prepared, tmp_path: Path):
    """The domain sample is the first validation blocks up to the token budget, the general sample
    comes from [eval] texts; a model with all-equal logits scores exactly targets·log2(V)/bytes on
    each; with the budget at 0 nothing is measured."""
    general = tmp_path / "general.txt"
    general.write_text("In the beginning God created the heaven and the earth.\n\n" * 40)
    recipe = small_recipe([prepared["docs"]])
    recipe.eval.texts = [general]
    recipe.eval.during_training_tokens = 200
    tok = load_tokenizer(prepared["tokenizer"])
    val = TokenShards(prepared["shards"], "validation")
    V = 512
    probe = TradeoffProbe.for_run(recipe, tok, val, torch.device("cpu"), None, V)
    domain = probe.samples["domain_bpb"]
    assert len(domain.seqs) == math.ceil(200 / val.seq_len)
    blocks = val.blocks(np.arange(len(domain.seqs)))
    assert domain.n_bytes == int(token_byte_lengths(tok)[blocks[:, 1:]].sum())

    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, tie_word_embeddings=False))
    torch.nn.init.zeros_(model.lm_head.weight)
    measured = probe.measure(model)
    for key, sample in probe.samples.items():
        targets = sum(len(s) - 1 for s in sample.seqs)
        assert math.isclose(measured[key], targets * math.log2(V) / sample.n_bytes, rel_tol=1e-5), key
    assert set(measured) == {"domain_bpb", "general_bpb"}

    recipe.eval.during_training_tokens = 0
    assert TradeoffProbe.for_run(recipe, tok, val, torch.device("cpu"), None, V).measure(model) == {}
