"""Membership inference: the AUC and TPR are what their definitions say; Min-K%++ standardises by the
vocabulary's own mean and spread; the base control removes what the two sides differ in as text."""

from __future__ import annotations

import numpy as np
import pytest

from selfsup.audit.membership import attack_scores, auc, auc_interval, membership_section, tpr_at_fpr
from selfsup.audit.scoring import RowScores


def test_auc_counts_pairs_and_ties_half():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert auc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert auc(np.array([2.0]), np.array([2.0])) == 0.5


def test_tpr_at_one_percent_fpr():
    non = np.arange(1000, dtype=float)  # threshold 990: 991..999 (0.9% of the non-members) pass it
    members = np.array([995.0, 999.5, 2000.0, 10.0])
    assert tpr_at_fpr(members, non) == pytest.approx(0.75)
    assert tpr_at_fpr(np.array([990.0]), non) == 0.0


def test_bootstrap_interval_resamples_documents():
    """Two documents whose windows are all alike: resampling documents gives a wide interval, where
    resampling the 200 windows one by one would have given a narrow one."""
    rng = np.random.default_rng(0)
    members = np.concatenate([rng.normal(0, 0.1, 100), rng.normal(1, 0.1, 100)])
    non = np.concatenate([rng.normal(0.5, 0.1, 100), rng.normal(0.5, 0.1, 100)])
    m_docs = np.array(["a"] * 100 + ["b"] * 100)
    n_docs = np.array(["c"] * 100 + ["d"] * 100)
    lo, hi = auc_interval(members, non, m_docs, n_docs, seed=0, n=200)
    assert lo < 0.1 and hi > 0.9


def test_min_k_plus_plus_standardises_each_position():
    """A token as likely as the distribution's average at its position scores 0 under Min-K%++, however
    low its raw log-probability: what Min-K% alone would call unfamiliar."""
    lp = np.log(np.full(10, 0.01, dtype=np.float32))
    scores = RowScores(log_prob=lp, greedy=np.zeros(10, bool), mu=lp.copy(), sigma=np.ones(10, np.float32))
    s = attack_scores(scores, "some text " * 10, base=None)
    assert s["min_k_pp"] == pytest.approx(0.0, abs=1e-6)
    assert s["min_k"] == pytest.approx(np.log(0.01), rel=1e-5) and s["loss"] == pytest.approx(np.log(0.01), rel=1e-5)
    with_base = attack_scores(scores, "x", base=RowScores(log_prob=lp - 1.0))
    assert with_base["reference"] == pytest.approx(1.0, rel=1e-5)


def test_the_base_control_removes_what_separates_the_sides_as_text():
    """If the base (which saw neither side) separates them as well as the trained model, nothing is left
    for training to have added: the verdict's AUC is back at 0.5."""
    rng = np.random.default_rng(3)
    members = [{"loss": float(v)} for v in rng.normal(1.0, 1.0, 300)]
    non = [{"loss": float(v)} for v in rng.normal(0.0, 1.0, 300)]
    docs_m, docs_n = [f"m{i}" for i in range(300)], [f"n{i}" for i in range(300)]
    alone = membership_section(members, non, docs_m, docs_n, seed=0)
    controlled = membership_section(members, non, docs_m, docs_n, seed=0, base=(members, non))
    assert alone["auc"] > 0.7 and alone["net_of_base"] is False
    assert controlled["auc"] == pytest.approx(0.5) and controlled["net_of_base"] is True
    assert controlled["attacks"]["loss"]["base_auc"] == pytest.approx(alone["auc"])


def test_a_base_that_separates_the_other_way_is_not_subtracted():
    """auc_beyond_base never exceeds 1: only separation the base shows in the attack's own direction is removed."""
    rng = np.random.default_rng(4)
    members = [{"loss": float(v)} for v in rng.normal(3.0, 1.0, 200)]
    non = [{"loss": float(v)} for v in rng.normal(0.0, 1.0, 200)]
    base = ([{"loss": float(v)} for v in rng.normal(0.0, 1.0, 200)], [{"loss": float(v)} for v in rng.normal(0.5, 1.0, 200)])
    out = membership_section(members, non, [f"m{i}" for i in range(200)], [f"n{i}" for i in range(200)], seed=0, base=base)
    a = out["attacks"]["loss"]
    assert a["base_auc"] < 0.5 and a["auc_beyond_base"] == pytest.approx(a["auc"]) and out["auc"] <= 1.0
