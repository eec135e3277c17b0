"""Retrieval on held-out documents: does a span find another span of its own document?

Each held-out document long enough gives a query (its first `passage_tokens` tokens) and a target
(the next `passage_tokens` tokens); each query ranks *all* targets (one per document) by cosine
similarity of mean-pooled embeddings. Reported: recall@1, recall@10 (the right target within the
top 1 / 10) and MRR (mean of 1 / rank). Baselines: BM25 over the same token ids (Robertson's
Okapi BM25, k1 = 1.2, b = 0.75; a lexical method with no training at all) and the same model
before training (its random initialisation, or the base model it continued from).
"""

from __future__ import annotations

import numpy as np
import torch

from selfsup.objectives.contrastive import embed, pad_rows


def retrieval_pairs(seqs: list[list[int]], passage_tokens: int, special: set[int]) -> tuple[list[list[int]], list[list[int]]]:
    queries, targets = [], []
    for seq in seqs:
        doc = [t for t in seq if t not in special]
        if len(doc) >= passage_tokens + 8:
            queries.append(doc[:passage_tokens])
            targets.append(doc[passage_tokens : 2 * passage_tokens])
    return queries, targets


def ranking_metrics(scores: np.ndarray) -> dict[str, float]:
    """(Q, Q) scores with the right answer on the diagonal → recall@1, recall@10, MRR."""
    truth = np.diag(scores)[:, None]
    rank = 1 + (scores > truth).sum(1)  # ties count in the query's favour
    return {"recall_at_1": float((rank <= 1).mean()), "recall_at_10": float((rank <= 10).mean()),
            "mrr": float((1.0 / rank).mean()), "queries": int(len(rank))}


@torch.no_grad()
def embed_passages(model, passages: list[list[int]], *, pad_id: int, batch_size: int, device) -> np.ndarray:
    model.eval()
    width = max(len(p) for p in passages)
    out = []
    for i in range(0, len(passages), batch_size):
        ids, mask = pad_rows(passages[i : i + batch_size], width, pad_id)
        out.append(torch.nn.functional.normalize(embed(model, ids.to(device), mask.to(device)), dim=-1).cpu())
    return torch.cat(out).numpy()


def score_retrieval(model, queries, targets, *, pad_id: int, batch_size: int, device) -> dict[str, float]:
    q = embed_passages(model, queries, pad_id=pad_id, batch_size=batch_size, device=device)
    t = embed_passages(model, targets, pad_id=pad_id, batch_size=batch_size, device=device)
    return ranking_metrics(q @ t.T)


def bm25_scores(queries: list[list[int]], docs: list[list[int]], vocab_size: int, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """(Q, D) Okapi BM25 scores over token ids."""
    tf = np.zeros((len(docs), vocab_size), dtype=np.float64)  # (D, V) term counts
    for i, d in enumerate(docs):
        np.add.at(tf[i], np.asarray(d, dtype=np.int64), 1.0)
    lengths = tf.sum(1, keepdims=True)
    df = (tf > 0).sum(0)
    idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))  # (V,)
    weight = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths / lengths.mean()))  # (D, V)
    qtf = np.zeros((len(queries), vocab_size), dtype=np.float64)
    for i, q in enumerate(queries):
        qtf[i, np.unique(np.asarray(q, dtype=np.int64))] = 1.0
    return qtf @ weight.T


def score_bm25(queries, targets, vocab_size: int) -> dict[str, float]:
    return ranking_metrics(bm25_scores(queries, targets, vocab_size))
