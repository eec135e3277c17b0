"""BM25 over words: the Okapi formula with Lucene's idf, queries count a term once, and a passage
outside the index is scored with the index's statistics."""

import math

import numpy as np

from selfsup.pairs.bm25 import BM25


def test_bm25_matches_the_formula_and_ranks_overlap_first():
    docs = ["alpha beta gamma gamma", "delta epsilon", "alpha zeta eta"]
    scores = BM25(docs).scores(["Gamma alpha gamma"])  # case folded; a repeated query term counts once
    idf = lambda df: math.log(1 + (3 - df + 0.5) / (df + 0.5))  # noqa: E731
    tf_part = lambda tf, dl: tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / 3))  # noqa: E731 (mean length 3)
    assert math.isclose(scores[0, 0], idf(2) * tf_part(1, 4) + idf(1) * tf_part(2, 4))
    assert scores[0, 1] == 0.0
    assert scores[0].argmax() == 0


def test_score_against_agrees_with_the_index_for_an_indexed_passage():
    docs = ["the journal is hot", "a hot journal is rolled back", "pages are cached"]
    index = BM25(docs)
    full = index.scores(["hot journal", "cached pages"])
    assert np.allclose(index.score_against(["hot journal", "cached pages"], [docs[1], docs[2]]), [full[0, 1], full[1, 2]])
