"""The training loop's attention forms give SDPA's results: short blocks written out (compiled on the CPU), and
packed documents from their bounds alone (no T×T mask)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

from selfsup.models.attention import (
    PACKED_DOCUMENT_ATTENTION,
    PACKED_MIN_TOKENS_CPU,
    SHORT_BLOCK_ATTENTION,
    SHORT_BLOCK_TOKENS,
    choose_attention,
    use_short_block_attention,
)
from selfsup.objectives.clm import CausalLM, document_causal_mask, document_positions, packed_document_bounds

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


# ---------------------------------------------------------------- packed documents (no T×T mask)

def _packed_same_as_masked_sdpa(model, ids: torch.Tensor, device: torch.device = CPU) -> None:
    """The packed form (bounds only) gives the dense-masked SDPA's logits and every gradient."""
    model = model.to(device)
    ids = ids.to(device)
    mask, positions = document_causal_mask(ids, eos_id=2)
    model.set_attn_implementation("sdpa")
    want_logits, want_grads = _outputs_and_grads(model, input_ids=ids, attention_mask=mask, position_ids=positions)
    model.set_attn_implementation(PACKED_DOCUMENT_ATTENTION)
    got_logits, got_grads = _outputs_and_grads(model, input_ids=ids, position_ids=document_positions(ids, 2),
                                               cu_seq_lens_q=packed_document_bounds(ids, 2))
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-5)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def _packed_ids(batch: int, seq_len: int, eos_every: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 96, (batch, seq_len), generator=g)
    ids[torch.rand(batch, seq_len, generator=g) < 1 / eos_every] = 2  # documents of ~eos_every tokens
    return ids


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["multi-head", "grouped-query"])
@pytest.mark.parametrize("seq_len", [40, 300, 1030])
def test_packed_documents_match_masked_sdpa(kv_heads, seq_len):
    """Logits and gradients of the packed-document form equal today's masked SDPA at several block lengths,
    with multi-head and grouped-query attention, documents crossing nothing (not rows, not each other)."""
    model = _llama(kv_heads)
    model.config.max_position_embeddings = 2048
    _packed_same_as_masked_sdpa(model, _packed_ids(3, seq_len, eos_every=max(5, seq_len // 6)))


def test_a_block_with_no_eos_is_one_document_per_row():
    """Rows never attend to each other even when no EOS separates them (each row opens a document)."""
    ids = _packed_ids(2, 50, eos_every=10**9)
    assert not (ids == 2).any()
    _packed_same_as_masked_sdpa(_llama(), ids)


def test_packed_bounds_are_the_masks_documents():
    """The bounds mark exactly where the dense mask's documents start, over the flattened batch, then its end."""
    ids = torch.tensor([[5, 6, 2, 7, 8, 9, 2, 4], [2, 3, 3, 3, 3, 2, 2, 3]])
    bounds = packed_document_bounds(ids, eos_id=2)
    assert bounds.dtype == torch.int32
    starts = bounds.tolist()
    assert starts == [0, 2, 6, 8, 13, 14, 16]
    mask, _ = document_causal_mask(ids, eos_id=2)
    for row in range(2):
        for t in range(8):  # a token sees the earlier tokens of its own document and nothing else
            start = max(s for s in starts if s <= row * 8 + t) - row * 8
            assert mask[row, 0, t].nonzero().flatten().tolist() == list(range(start, t + 1))
    assert ids.tolist()[1][0] == 2  # the caller's blocks are untouched


def test_packed_form_with_a_padding_mask_is_plain_sdpa():
    """Held-out scoring during training calls the model with a padding mask and no bounds: it gets SDPA's answer."""
    model = _llama()
    ids = torch.randint(3, 96, (2, 20))
    pad = torch.ones(2, 20, dtype=torch.long)
    pad[1, 15:] = 0
    model.set_attn_implementation("sdpa")
    want = model(input_ids=ids, attention_mask=pad).logits
    model.set_attn_implementation(PACKED_DOCUMENT_ATTENTION)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=pad).logits, want)


def test_packed_documents_chosen_by_device_and_length(tmp_path):
    """GPUs and long CPU blocks with document masking take the packed form; short CPU blocks keep theirs;
    an encoder, or no document mask, never; the saved config still loads as standard SDPA."""
    assert choose_attention(_llama(), CPU, 256, compiled=True, document_mask=True) == SHORT_BLOCK_ATTENTION
    assert choose_attention(_llama(), CPU, 1024, compiled=False, document_mask=True) == "sdpa"
    assert choose_attention(_llama(), CPU, PACKED_MIN_TOKENS_CPU, compiled=True, document_mask=False) == "sdpa"
    assert choose_attention(_llama(), torch.device("cuda"), 256, compiled=True, document_mask=True) == PACKED_DOCUMENT_ATTENTION
    encoder = BertForMaskedLM(BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=128))
    assert choose_attention(encoder, CPU, 4096, compiled=False, document_mask=True) == "sdpa"
    model = _llama()
    assert choose_attention(model, CPU, PACKED_MIN_TOKENS_CPU, compiled=True, document_mask=True) == PACKED_DOCUMENT_ATTENTION
    model.save_pretrained(tmp_path)
    assert PACKED_DOCUMENT_ATTENTION not in (tmp_path / "config.json").read_text()
    assert LlamaForCausalLM.from_pretrained(tmp_path).config._attn_implementation == "sdpa"


def test_clm_batch_in_packed_form_gives_the_same_loss():
    """The objective's packed batch (no mask, bounds instead) trains on the same loss as its masked batch."""
    ids = _packed_ids(2, 64, eos_every=9)
    dense, packed = CausalLM(eos_id=2), CausalLM(eos_id=2)
    packed.packed_attention = True
    dense_batch, packed_batch = dense.make_batch(ids), packed.make_batch(ids)
    bounds = packed_batch["cu_seq_lens_q"]
    assert "attention_mask" not in packed_batch and bounds[0] == 0 and bounds[-1] == ids.numel()
    model = _llama()
    model.set_attn_implementation("sdpa")
    want = dense.compute_loss(model, dense_batch)
    model.set_attn_implementation(PACKED_DOCUMENT_ATTENTION)
    torch.testing.assert_close(packed.compute_loss(model, packed_batch), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the GPU check script runs it)")
@pytest.mark.parametrize("kv_heads", [4, 2], ids=["multi-head", "grouped-query"])
def test_packed_documents_on_cuda_match_masked_sdpa(kv_heads):
    """On a GPU the packed form runs variable-length flash attention: bf16, same logits and gradients as
    masked SDPA within bf16 rounding."""
    model = _llama(kv_heads).to(torch.bfloat16)
    model.config.max_position_embeddings = 2048
    ids = _packed_ids(2, 1024, eos_every=150).cuda()
    mask, positions = document_causal_mask(ids, eos_id=2)
    model = model.cuda()
    model.set_attn_implementation("sdpa")
    want_logits, want_grads = _outputs_and_grads(model, input_ids=ids, attention_mask=mask, position_ids=positions)
    model.set_attn_implementation(PACKED_DOCUMENT_ATTENTION)
    got_logits, got_grads = _outputs_and_grads(model, input_ids=ids, position_ids=document_positions(ids, 2),
                                               cu_seq_lens_q=packed_document_bounds(ids, 2))
    torch.testing.assert_close(got_logits.float(), want_logits.float(), rtol=2e-2, atol=2e-2)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got.float(), want.float(), rtol=5e-2, atol=5e-3)
