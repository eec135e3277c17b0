"""Bits per byte: the arithmetic is right, every target is scored once, baselines score the same targets."""

import math

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from selfsup.evaluation.bits_per_byte import (
    Score,
    document_sequences,
    score_clm,
    score_unigram_clm,
    unigram_log_probs,
    windows,
)
from selfsup.tokens import document_encoder, load_tokenizer


def test_windows_cover_every_target_exactly_once():
    """Long documents are cut into windows whose targets tile the document without overlap."""
    seq = list(range(23))
    pairs = windows([seq], seq_len=5)
    targets = [t for _, tgt in pairs for t in tgt]
    assert targets == seq[1:]
    for inp, tgt in pairs:
        assert len(inp) == len(tgt) <= 5 and inp[1:] == tgt[:-1]


def test_uniform_model_scores_log2_vocab_bits_per_token(prepared):
    """A model whose logits are all equal pays exactly log2(V) bits per predicted token, so its
    bits per byte is tokens·log2(V)/bytes."""
    tok = load_tokenizer(prepared["tokenizer"])
    texts = ["An attribute reference is a primary followed by a period.", "Ünïcödé text — with bytes ≠ chars."]
    seqs, n_targets, n_bytes = document_sequences(texts, document_encoder(tok), tok.eos_token_id, 10_000)
    V = 512
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, tie_word_embeddings=False))
    torch.nn.init.zeros_(model.lm_head.weight)
    score = score_clm(model, seqs, n_bytes, seq_len=8, batch_size=3, device=torch.device("cpu"), amp_dtype=None, pad_id=0)
    assert score.tokens == n_targets == sum(len(s) - 1 for s in seqs)
    assert n_bytes == sum(len(t.encode()) for t in texts)
    assert math.isclose(score.metrics()["bits_per_byte"], n_targets * math.log2(V) / n_bytes, rel_tol=1e-6)
    assert math.isclose(score.metrics()["perplexity"], V, rel_tol=1e-5)


def test_unigram_baseline_is_smoothed_frequencies():
    """The unigram scores each target with add-one smoothed training frequencies."""
    counts = np.array([0, 3, 1, 0])
    lp = unigram_log_probs(counts)
    assert np.allclose(np.exp(lp), np.array([1, 4, 2, 1]) / 8)
    s = score_unigram_clm(lp, [[2, 1, 1, 3]], n_bytes=10)
    assert math.isclose(s.nll, -(lp[1] * 2 + lp[3]))
    assert s.tokens == 3


def test_score_metrics_definitions():
    """loss = nll/tokens, perplexity = e^loss, bits/byte = nll/(ln2·bytes)."""
    m = Score(nll=math.log(2) * 80, tokens=40, bytes=100, documents=1).metrics()
    assert math.isclose(m["bits_per_byte"], 0.8) and math.isclose(m["perplexity"], 4.0)


def test_the_document_reaching_the_cap_is_cut_there(prepared):
    """max_tokens bounds the targets scored: the last document is cut at the cap, and its bytes are
    those of the kept tokens' text, not of the whole document."""
    tok = load_tokenizer(prepared["tokenizer"])
    texts = ["short one.", "A much longer document " * 50]
    encoder = document_encoder(tok)
    first = len(encoder.encode(texts[0], add_special_tokens=False).ids) + 1
    seqs, n_targets, n_bytes = document_sequences(texts, encoder, tok.eos_token_id, first + 7)
    assert n_targets == first + 7 == sum(len(s) - 1 for s in seqs)
    assert seqs[1][-1] != tok.eos_token_id
    kept = tok.decode(seqs[1][1:])
    assert n_bytes == len(texts[0].encode()) + len(kept.encode())
