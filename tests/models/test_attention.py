"""Short-block attention: the written-out softmax(QKᵀ)V the CPU training loop compiles gives SDPA's results."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

from selfsup.models.attention import SHORT_BLOCK_ATTENTION, SHORT_BLOCK_TOKENS, use_short_block_attention
from selfsup.objectives.clm import document_causal_mask

CPU = torch.device("cpu")


def _llama(kv_heads: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _outputs_and_grads(model, **inputs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    logits = model(**inputs).logits
    logits.pow(2).mean().backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _same_as_sdpa(model, **inputs) -> None:
    model.set_attn_implementation("sdpa")
    want_logits, want_grads = _outputs_and_grads(model, **inputs)
    model.set_attn_implementation(SHORT_BLOCK_ATTENTION)
    got_logits, got_grads = _outputs_and_grads(model, **inputs)
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-5)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["multi-head", "grouped-query"])
def test_decoder_with_document_mask_matches_sdpa(kv_heads):
    """Logits and every gradient equal SDPA's for a Llama decoder under the document mask (packed blocks
    with several documents), with multi-head and grouped-query attention."""
    ids = torch.randint(3, 96, (3, 40))
    ids[:, [7, 19, 33]] = 2  # EOS: four documents per block
    mask, positions = document_causal_mask(ids, eos_id=2)
    _same_as_sdpa(_llama(kv_heads), input_ids=ids, attention_mask=mask, position_ids=positions)


def test_plain_causal_decoder_matches_sdpa():
    """Without a mask the decoder stays causal (a future token must not leak in)."""
    _same_as_sdpa(_llama(), input_ids=torch.randint(3, 96, (2, 33)))


def test_encoder_attends_both_ways_like_sdpa():
    """A BERT encoder (mlm) sees the whole block: no causal mask slips in where SDPA has none."""
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=128, max_position_embeddings=64)).eval()
    _same_as_sdpa(model, input_ids=torch.randint(3, 96, (2, 30)))


def test_chosen_only_where_it_is_faster_and_never_saved(tmp_path):
    """Only compiled CPU training on short blocks switches; the saved config still loads as standard SDPA."""
    assert not use_short_block_attention(_llama(), CPU, 256, compiled=False)
    assert not use_short_block_attention(_llama(), CPU, SHORT_BLOCK_TOKENS * 2, compiled=True)
    assert not use_short_block_attention(_llama(), torch.device("cuda"), 256, compiled=True)
    model = _llama()
    assert use_short_block_attention(model, CPU, 256, compiled=True)
    big = _llama()
    big.config.num_hidden_layers = 30  # a real base's depth: 8 x 4 heads x 512² x 30 scores is past the limit
    assert not use_short_block_attention(big, CPU, 512, compiled=True, batch_size=8)
    assert model.config._attn_implementation == SHORT_BLOCK_ATTENTION
    model.save_pretrained(tmp_path)
    assert SHORT_BLOCK_ATTENTION not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
    assert LlamaForCausalLM.from_pretrained(tmp_path).config._attn_implementation == "sdpa"
