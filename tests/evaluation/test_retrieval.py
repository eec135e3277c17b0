"""Retrieval metrics and the BM25 baseline."""

import math

import numpy as np

from selfsup.evaluation.retrieval import bm25_scores, ranking_metrics


def test_ranking_metrics():
    perfect = np.eye(12)
    assert ranking_metrics(perfect) == {"recall_at_1": 1.0, "recall_at_10": 1.0, "mrr": 1.0, "queries": 12}
    worst = 1 - np.eye(12)
    m = ranking_metrics(worst)
    assert m["recall_at_1"] == 0.0 and m["recall_at_10"] == 0.0 and math.isclose(m["mrr"], 1 / 12)


def test_bm25_matches_the_formula_and_ranks_overlap_first():
    docs = [[5, 6, 7, 7], [8, 9], [5, 10, 11]]
    scores = bm25_scores([[7, 5]], docs, vocab_size=16)
    # by hand: idf(t) = ln(1 + (N - df + .5) / (df + .5)); avgdl = 3
    idf = lambda df: math.log(1 + (3 - df + 0.5) / (df + 0.5))
    tf_part = lambda tf, dl: tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / 3))
    expected0 = idf(2) * tf_part(1, 4) + idf(1) * tf_part(2, 4)
    assert math.isclose(scores[0, 0], expected0)
    assert scores[0, 1] == 0.0
    assert scores[0].argmax() == 0
