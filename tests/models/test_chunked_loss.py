"""Chunked head loss: transformers' causal-LM loss and gradients, without full-vocabulary logits."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

from selfsup.models import chunked_loss
from selfsup.models.chunked_loss import (
    chunked_causal_lm_loss,
    linear_cross_entropy,
    target_nll,
    supports_chunked_head,
)
from selfsup.objectives.clm import document_causal_mask


def _llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


def _loss_and_grads(model, loss_fn, batch, bf16: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(model, batch)
    loss.backward()
    return loss.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tied", [True, False], ids=["tied-head", "untied-head"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_same_loss_and_gradients_as_transformers(monkeypatch, tied, bf16):
    """Under a document mask, with ignored labels and chunks that do not divide the rows, the loss and
    every parameter's gradient equal transformers' own (fp32: to rounding; bf16: to bf16 precision)."""
    monkeypatch.setattr(chunked_loss, "CHUNK_ELEMENTS", 300 * 7)  # 7 rows a chunk: many chunks, a ragged last one
    model = _llama(tied)
    ids = torch.randint(5, 300, (3, 24))
    ids[:, [5, 15]] = 2
    mask, positions = document_causal_mask(ids, eos_id=2)
    labels = ids.clone()
    labels[0, 3:9] = -100
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask, "position_ids": positions}
    want_loss, want = _loss_and_grads(model, lambda m, b: m(**b).loss, batch, bf16)
    got_loss, got = _loss_and_grads(model, chunked_causal_lm_loss, batch, bf16)
    tol = dict(rtol=2e-2, atol=2e-3) if bf16 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got_loss, want_loss, **tol)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_backward_scales_by_the_incoming_gradient():
    """The saved gradients are scaled by d(outer)/d(loss): 3·loss gets three times the gradient."""
    torch.manual_seed(0)
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(50, 8, requires_grad=True)
    targets = torch.randint(0, 50, (10,))
    (3 * linear_cross_entropy(hidden, weight, targets)).backward()
    h2, w2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    (3 * torch.nn.functional.cross_entropy(h2 @ w2.T, targets)).backward()
    torch.testing.assert_close(hidden.grad, h2.grad)
    torch.testing.assert_close(weight.grad, w2.grad)


def test_without_gradients_only_the_loss_is_computed():
    """Under no_grad (validation) the same loss comes back and no gradient work is done or kept."""
    torch.manual_seed(0)
    hidden, weight = torch.randn(10, 8), torch.randn(50, 8)
    targets = torch.randint(0, 50, (10,))
    targets[3] = -100
    with torch.no_grad():
        got = linear_cross_entropy(hidden, weight, targets)
    assert got.grad_fn is None
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(hidden @ weight.T, targets))


def test_only_plain_causal_heads_are_taken():
    """A Llama decoder qualifies; an encoder's MLM head (bias, transform layer) does not."""
    assert supports_chunked_head(_llama(tied=True))
    bert = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=64))
    assert not supports_chunked_head(bert)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_summed_held_out_nll_equals_the_logits_cross_entropy(monkeypatch, bf16):
    """Held-out scoring through the chunked head gives transformers' summed cross-entropy over the
    labelled targets, with padding masked out and a ragged last chunk; an unqualified model falls
    back to its logits with the same value."""
    monkeypatch.setattr(chunked_loss, "CHUNK_ELEMENTS", 300 * 5)
    model = _llama(tied=True).eval()
    ids = torch.randint(5, 300, (2, 13))
    attn = torch.ones_like(ids)
    attn[1, 9:] = 0
    targets = torch.randint(5, 300, (2, 13))
    targets[1, 9:] = -100
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, attention_mask=attn).logits.float()
        got = float(target_nll(model, {"input_ids": ids, "attention_mask": attn}, targets).sum())
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 300), targets.reshape(-1), ignore_index=-100,
                                             reduction="sum")
    assert got == pytest.approx(float(want), rel=1e-2 if bf16 else 1e-5)
    monkeypatch.setattr(chunked_loss, "supports_chunked_head", lambda m: False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        fallback = float(target_nll(model, {"input_ids": ids, "attention_mask": attn}, targets).sum())
    assert fallback == pytest.approx(float(want), rel=1e-2 if bf16 else 1e-5)


def test_gemma3_takes_the_chunked_head_with_the_same_loss_and_gradients():
    """Gemma 3 (no final logit soft-capping, a tied head, embeddings scaled inside the backbone)
    qualifies: its 262k-token vocabulary is where full-vocabulary logits cost most."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=16, max_position_embeddings=64, sliding_window=8)
    model = Gemma3ForCausalLM(config)
    assert supports_chunked_head(model)
    ids = torch.randint(5, 300, (2, 16))
    batch = {"input_ids": ids, "labels": ids.clone()}
    want, want_grads = _loss_and_grads(model, lambda m, b: m(**b).loss, batch, bf16=False)
    got, got_grads = _loss_and_grads(model, chunked_causal_lm_loss, batch, bf16=False)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5)
