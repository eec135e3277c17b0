"""Okapi BM25 over words: the lexical retriever a user already has, and a miner of hard negatives.

Robertson's BM25 (k1 = 1.2, b = 0.75, the defaults of Lucene, Pyserini and rank_bm25) over
lower-cased word tokens (`structure.words`), with the idf of Lucene (log(1 + (N − df + ½)/(df + ½)),
never negative). The document-term matrix is sparse (scipy), so a corpus of a few hundred thousand
passages is scored in seconds. Used twice: as the baseline every retrieval figure is set beside,
and to pick, for each training query, the highest-scoring passage of another document: a
negative that shares the query's words but does not answer it (a "hard negative"; Karpukhin et
al. 2020, DPR, found one BM25 negative per question worth more than many random ones).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from selfsup.pairs.structure import words


class BM25:
    def __init__(self, passages: list[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        counts = self._counts(passages, grow=True)  # (D, V) term frequencies
        n_docs = counts.shape[0]
        df = np.bincount(counts.indices, minlength=len(self.vocab))
        self.idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        lengths = np.asarray(counts.sum(1)).ravel()
        self.mean_length = max(float(lengths.mean()) if n_docs else 1.0, 1e-9)
        self.weights = self._weigh(counts)  # (D, V) BM25 term weights

    def _counts(self, texts: list[str], *, grow: bool) -> sp.csr_matrix:
        rows, cols = [], []
        for i, text in enumerate(texts):
            for w in words(text):
                j = self.vocab.get(w)
                if j is None and grow:
                    j = self.vocab[w] = len(self.vocab)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float64)
        m = sp.csr_matrix((data, (rows, cols)), shape=(len(texts), len(self.vocab)))
        m.sum_duplicates()
        return m

    def _weigh(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        lengths = np.asarray(counts.sum(1)).ravel()
        norm = self.k1 * (1 - self.b + self.b * lengths / self.mean_length)  # per document
        w = counts.tocoo(copy=True)
        tf = w.data
        w.data = self.idf[w.col] * tf * (self.k1 + 1) / (tf + norm[w.row])
        return w.tocsr()

    def query_terms(self, queries: list[str]) -> sp.csr_matrix:
        q = self._counts(queries, grow=False)
        q.data[:] = 1.0  # a query term counts once, however often it is typed
        return q

    def sparse_scores(self, queries: list[str]) -> sp.csr_matrix:
        """(Q, D) scores of every query against every passage the index was built on; zero (not
        stored) where they share no word, so a large index is scored without a dense (Q, D) array."""
        return sp.csr_matrix(self.query_terms(queries) @ self.weights.T)

    def scores(self, queries: list[str]) -> np.ndarray:
        """`sparse_scores` as a dense (Q, D) array."""
        return self.sparse_scores(queries).toarray()

    def score_against(self, queries: list[str], passages: list[str]) -> np.ndarray:
        """(Q,) score of query i against passage i, with this index's idf and mean length (a
        passage that is not in the index, e.g. a passage with the query's sentence taken out)."""
        q, p = self.query_terms(queries), self._weigh(self._counts(passages, grow=False))
        return np.asarray(q.multiply(p).sum(1)).ravel()
