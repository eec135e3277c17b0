"""Held-out retrieval: a query's own passage competes as the query should find it (its sentence
taken out) and its unmodified copy does not compete; metrics per kind; the same questions for
every model; BM25 finds lexical matches."""

import math

import numpy as np

from selfsup.evaluation.retrieval import RetrievalSet, rank_with_bm25, ranking_metrics, ranks, retrieval_examples
from tests.pairs.test_structure import PAGE


def test_ranks_leave_the_unmodified_copy_out_and_share_ties():
    pool = np.array([[0.9, 0.5, 0.2], [0.1, 0.8, 0.8]])
    true = np.array([0.4, 0.8])
    r = ranks(pool, true, own=np.array([0, 1]))
    assert r.tolist() == [2, 1.5]  # query 0: its own copy (0.9) left out, 0.5 beats 0.4; query 1: a tie shares ranks 1-2


def test_a_model_that_embeds_every_text_alike_ranks_at_chance_not_first():
    """All scores equal (a collapsed encoder; BM25 for a query sharing no word with any passage): the
    passage's rank is the middle of the pool, so MRR is near 2 / passages, not 1."""
    n = 101
    r = ranks(np.zeros((4, n)), np.zeros(4), own=np.arange(4))
    assert r.tolist() == [51.0] * 4
    noisy = 1 - np.random.default_rng(0).uniform(0, 6e-7, (4, n))  # a collapsed encoder's cosines: 1 within rounding
    assert ranks(noisy, np.ones(4), own=np.arange(4)).tolist() == [51.0] * 4
    assert ranks(np.array([[0.5, 0.3]]), np.array([0.29]), own=np.array([1])).tolist() == [2.0]  # real gaps still count
    m = ranking_metrics(r)
    assert m["recall_at_1"] == 0 and m["recall_at_10"] == 0 and math.isclose(m["mrr"], 1 / 51)


def test_metrics_overall_and_per_kind():
    m = ranking_metrics(np.array([1, 2, 20, 1]), ["title", "ict", "ict", "title"])
    assert m["recall_at_1"] == 0.5 and m["recall_at_10"] == 0.75 and math.isclose(m["mrr"], (1 + 0.5 + 0.05 + 1) / 4)
    assert m["kinds"]["title"]["mrr"] == 1.0 and m["kinds"]["ict"]["queries"] == 2


def test_retrieval_set_samples_each_kind_and_bm25_answers_lexical_queries():
    texts = [PAGE.replace("journal", f"journal{i}").replace("Journal", f"Journal{i}") for i in range(30)]
    rs = RetrievalSet.from_texts(texts, seed=0, per_kind=10)
    kinds = [q.kind for q in rs.queries]
    assert kinds.count("title") == 10 and kinds.count("ict") == 10
    assert RetrievalSet.from_texts(texts, seed=0, per_kind=10).queries == rs.queries
    bm25 = rank_with_bm25(rs)
    metrics = bm25.metrics(rs)
    assert metrics["passages"] == len(rs.passages) and metrics["queries"] == len(rs)
    # "journal7" is in two passages, both of document 7: a first sentence finds its passage first or second when
    # the rest of the passage has the word too, and shares nothing with the rest when it has not
    for q, rank in zip(rs.queries, bm25.rank):
        if q.kind == "first_sentence":
            assert (rank <= 2) == (f"journal{q.doc}" in q.positive), (q, rank)
    examples = retrieval_examples(rs, {"bm25": bm25}, seed=0)
    assert [e["kind"] for e in examples] == ["title", "first_sentence", "ict"]
    assert all(len(e["top"]["bm25"]) == 3 and e["ranks"]["bm25"] >= 1 for e in examples)
    assert all(any(t["right"] for t in e["top"]["bm25"]) == (e["ranks"]["bm25"] <= 3) for e in examples)
