"""The teacher-forced pass agrees with what it stands for: greedy `generate` reproduces a window's
suffix for exactly as many tokens as the pass says, and its statistics are the full-logits ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.audit.extraction import extracted, matched_tokens
from selfsup.audit.scoring import score_rows
from selfsup.audit.windows import PREFIX_TOKENS, SUFFIX_TOKENS, Shape, Window, _Doc, duplicated_windows, random_windows, window_shape
from selfsup.models import build_model

IDS = {"bos": 1, "eos": 2, "pad": 0}


def _model():
    torch.manual_seed(0)
    return build_model("clm", "tiny", vocab_size=300, seq_len=128, special_ids=IDS).eval()


def test_matched_tokens_agree_with_greedy_generation():
    """Windows whose suffix is the model's own greedy continuation for its first k tokens, then other
    tokens: the pass finds k matched tokens, and `extracted` only where k is the whole suffix."""
    model = _model()
    rng = np.random.default_rng(0)
    rows, expected = [], []
    for k in (0, 1, 7, 23, SUFFIX_TOKENS):
        prefix = rng.integers(3, 300, PREFIX_TOKENS).tolist()
        greedy = model.generate(torch.tensor([prefix]), attention_mask=torch.ones(1, PREFIX_TOKENS, dtype=torch.long),
                                max_new_tokens=SUFFIX_TOKENS, do_sample=False, pad_token_id=0)[0, PREFIX_TOKENS:].tolist()
        suffix = greedy[:k] + [(t % 296) + 3 if (t % 296) + 3 != t else 4 for t in greedy[k:]]
        rows.append(prefix + suffix)
        expected.append(k)
    scores = score_rows(model, rows, batch_size=2, device=torch.device("cpu"), amp_dtype=None, pad_id=0)
    assert [matched_tokens(s, PREFIX_TOKENS) for s in scores] == expected
    assert [extracted(s, PREFIX_TOKENS) for s in scores] == [k == SUFFIX_TOKENS for k in expected]


def test_statistics_equal_the_full_logits_ones_whatever_the_batch():
    """log p, argmax hits, and the vocabulary's mean/sd of log p, from chunks of positions, equal those
    of the full log-softmax; rows of different lengths in one batch do not disturb each other."""
    model = _model()
    rng = np.random.default_rng(1)
    rows = [rng.integers(3, 300, n).tolist() for n in (20, 37, 9)]
    together = score_rows(model, rows, batch_size=3, device=torch.device("cpu"), amp_dtype=None, pad_id=0)
    for row, s in zip(rows, together):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([row])).logits[0, :-1].float(), -1)
        target = torch.tensor(row[1:])
        np.testing.assert_allclose(s.log_prob, lp.gather(1, target[:, None]).squeeze(1).numpy(), atol=1e-4)
        np.testing.assert_array_equal(s.greedy, (lp.argmax(-1) == target).numpy())
        p = lp.exp()
        mu = (p * lp).sum(-1)
        np.testing.assert_allclose(s.mu, mu.numpy(), atol=1e-4)
        np.testing.assert_allclose(s.sigma, ((p * (lp - mu[:, None]) ** 2).sum(-1)).sqrt().numpy(), atol=1e-3)


def _doc(ids, blocked=None, name="d"):
    ids = np.asarray(ids, dtype=np.int64)
    return _Doc(name, f"{name}.txt", ids, np.zeros(len(ids), bool) if blocked is None else blocked, [])


def test_windows_avoid_canaries_and_spread_over_documents():
    rng = np.random.default_rng(0)
    blocked = np.zeros(400, bool)
    blocked[150:170] = True  # a canary's tokens
    docs = [_doc(rng.integers(3, 300, 400), blocked, "a")] + [_doc(rng.integers(3, 300, 120), None, f"b{i}") for i in range(5)]
    windows = random_windows(docs, "train", 12, rng)
    assert len(windows) == 12 and len({w.doc_id for w in windows}) == 6  # two per document, not 12 from the longest
    for w in windows:
        if w.doc_id == "a":
            start = next(s for s in range(301) if docs[0].ids[s : s + 100].tolist() == w.ids)
            assert start + 100 <= 150 or start >= 170


def test_duplicated_windows_rank_by_copies():
    rng = np.random.default_rng(2)
    boiler = rng.integers(3, 300, 100).tolist()
    docs = [_doc(rng.integers(3, 300, 50).tolist() + boiler + rng.integers(3, 300, 50).tolist(), name=f"d{i}") for i in range(4)]
    docs.append(_doc(rng.integers(3, 300, 200), name="unique"))
    found = duplicated_windows(docs, 3)
    assert len(found) == 1 and found[0].copies == 4  # shifted copies of one passage count once
    text = " ".join(map(str, docs[0].ids.tolist()))
    assert " ".join(map(str, found[0].ids[:50])) in " ".join(map(str, boiler)) and " ".join(map(str, found[0].ids)) in text
    assert all(isinstance(w, Window) and w.kind == "duplicated" for w in found)


def test_windows_fit_the_context_the_model_trained_on():
    assert window_shape(2048) == Shape(50, 50) and window_shape(64) == Shape(32, 32) and window_shape(65).total == 65


def test_masked_scores_are_pseudo_log_likelihoods():
    """Exact PLL (groups=None) scores each target with only itself masked; seven groups mask every seventh
    token per copy, and every position is scored exactly once either way."""
    from selfsup.audit.scoring import score_masked_rows

    torch.manual_seed(0)
    model = build_model("mlm", "tiny", vocab_size=300, seq_len=64, special_ids={**IDS, "mask": 4}).eval()
    rng = np.random.default_rng(3)
    rows = [rng.integers(5, 300, n).tolist() for n in (12, 30)]
    targets = [np.array([2, 5, 9]), np.arange(30)]
    exact = score_masked_rows(model, rows, targets, groups=None, mask_id=4, batch_size=4, device=torch.device("cpu"),
                              amp_dtype=None, pad_id=0)
    for row, t, s in zip(rows, targets, exact):
        for j, pos in enumerate(t):
            ids = torch.tensor([row])
            ids[0, pos] = 4
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=ids).logits[0, pos].float(), -1)
            assert s.log_prob[j] == pytest.approx(float(lp[row[pos]]), abs=1e-4)
    grouped = score_masked_rows(model, rows[1:], targets[1:], groups=7, mask_id=4, batch_size=4,
                                device=torch.device("cpu"), amp_dtype=None, pad_id=0)[0]
    assert grouped.log_prob.shape == (30,) and np.isfinite(grouped.log_prob).all() and (grouped.sigma > 0).all()
