"""Retrieval on held-out documents: do the queries a person would type find their passage?

The held-out documents are cut into passages and mined for queries exactly as training documents
are (pairs/structure.py): a heading → the first passage of its section (`title`), a paragraph's
first sentence → the rest of its passage (`first_sentence`), another sentence → its passage
without it (`ict`, the inverse cloze task). Each query ranks *every* held-out passage by cosine
similarity of the model's embeddings (mean pooling, as export documents); its own passage takes
part as the query should find it (the query's sentence taken out, so the answer is not the query
copied), the others as they are. Reported for all queries and per kind: recall@1, recall@10
(the right passage first / within the top 10) and MRR (mean of 1 / rank); ties count in the
query's favour. Beside the model: Okapi BM25 over words (pairs/bm25.py), what a user gets with
no training at all, and the model before training (the base, or the preset's initialisation).

Queries are sampled per kind (`MAX_QUERIES_PER_KIND`, seeded) so one kind cannot swamp the rest,
and every model answers the same questions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from selfsup.objectives.contrastive import embed, pad_rows
from selfsup.pairs.bm25 import BM25
from selfsup.pairs.rows import encode_texts
from selfsup.pairs.structure import Pair, mine_documents

MAX_QUERIES_PER_KIND = 300
KINDS = ("title", "first_sentence", "ict")
EXAMPLE_PASSAGE_CHARS = 240
EMBED_BATCH = 64  # passages embedded at once: short sequences, so wider than [eval] batch_size


@dataclass
class RetrievalSet:
    """Held-out passages (the pool every query ranks) and the queries, each with its own passage."""

    passages: list[str]
    queries: list[Pair]

    @classmethod
    def from_texts(cls, texts: list[str], seed: int, per_kind: int = MAX_QUERIES_PER_KIND) -> RetrievalSet:
        passages, pairs = mine_documents(texts, seed)
        rng = random.Random(seed)
        chosen = []
        for kind in KINDS:
            of_kind = [p for p in pairs if p.kind == kind]
            chosen += sorted(rng.sample(of_kind, per_kind), key=lambda p: p.passage) if len(of_kind) > per_kind else of_kind
        return cls([p.text for p in passages], chosen)

    def __len__(self) -> int:
        return len(self.queries)


TIE_TOLERANCE = 1e-5  # scores this close tie: float32 cosines of one text differ by ~1e-7 between batches


def ranks(pool_scores: np.ndarray, true_scores: np.ndarray, own: np.ndarray) -> np.ndarray:
    """1-based rank of each query's own passage: (Q, P) scores of the pool, (Q,) score of the
    query against its own passage as it should find it, (Q,) index of that passage in the pool
    (whose unmodified copy is left out of the competition).

    Passages that tie with it share the ranks they span and it gets their mean (fractional ranking):
    its expected place when ties are broken at random. Scores within float rounding of each other
    tie (the true score is computed apart from the pool's). Counting ties in its favour gave an mlm
    trained from scratch whose embeddings had collapsed (every cosine 1 - 1e-7) MRR 0.99; BM25 on a
    query that shares no word with any passage likewise.
    """
    others = np.ones_like(pool_scores, dtype=bool)
    others[np.arange(len(own)), own] = False
    true = true_scores[:, None]
    tied = np.isclose(pool_scores, true, rtol=TIE_TOLERANCE, atol=TIE_TOLERANCE) & others
    better = (pool_scores > true) & ~tied & others
    return 1 + better.sum(1) + tied.sum(1) / 2


def ranking_metrics(rank: np.ndarray, kinds: list[str] | None = None) -> dict:
    """recall@1, recall@10, MRR, queries, for all queries and (with `kinds`) per kind."""
    def of(r: np.ndarray) -> dict:
        return {"recall_at_1": float((r <= 1).mean()), "recall_at_10": float((r <= 10).mean()),
                "mrr": float((1.0 / r).mean()), "queries": int(len(r))}

    out = of(rank)
    if kinds is not None:
        k = np.asarray(kinds)
        out["kinds"] = {kind: of(rank[k == kind]) for kind in KINDS if (k == kind).any()}
    return out


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], *, width: int, pad_id: int, batch_size: int, device) -> np.ndarray:
    """(N, H) unit-length mean-pooled embeddings, in batches of similar length (less padding)."""
    model.eval()
    ids = encode_texts(tokenizer, texts, width)
    order = np.argsort([len(i) for i in ids], kind="stable")
    chunks = []
    for start in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[start : start + batch_size]]
        x, mask = pad_rows(rows, max(len(r) for r in rows), pad_id)
        chunks.append(torch.nn.functional.normalize(embed(model, x.to(device), mask.to(device)), dim=-1).float().cpu().numpy())
    out = np.empty((len(ids), chunks[0].shape[1] if chunks else 0), dtype=np.float32)
    if chunks:
        out[order] = np.concatenate(chunks)
    return out


@dataclass
class Ranking:
    """One model's answers: the rank of every query's passage and its scores over the pool."""

    rank: np.ndarray
    pool_scores: np.ndarray
    true_scores: np.ndarray

    def metrics(self, rs: RetrievalSet) -> dict:
        return {**ranking_metrics(self.rank, [q.kind for q in rs.queries]), "passages": len(rs.passages)}

    def top(self, i: int, own: int, n: int = 3) -> list[int]:
        """The pool indices query i puts first (its own passage, scored as it should be found, in place;
        after the passages it ties with: the examples never flatter it)."""
        s = self.pool_scores[i].copy()
        s[own] = self.true_scores[i]
        return [int(j) for j in np.lexsort((np.arange(len(s)) == own, -s))[:n]]


def rank_with_model(model, tokenizer, rs: RetrievalSet, *, width: int, pad_id: int, device,
                    batch_size: int = EMBED_BATCH) -> Ranking:
    kw = dict(width=width, pad_id=pad_id, batch_size=batch_size, device=device)
    pool = embed_texts(model, tokenizer, rs.passages, **kw)
    queries = embed_texts(model, tokenizer, [q.query for q in rs.queries], **kw)
    targets = embed_texts(model, tokenizer, [q.positive for q in rs.queries], **kw)
    pool_scores, true_scores = queries @ pool.T, (queries * targets).sum(1)
    return Ranking(ranks(pool_scores, true_scores, _own(rs)), pool_scores, true_scores)


def rank_with_bm25(rs: RetrievalSet) -> Ranking:
    index = BM25(rs.passages)
    queries = [q.query for q in rs.queries]
    pool_scores = index.scores(queries)
    true_scores = index.score_against(queries, [q.positive for q in rs.queries])
    return Ranking(ranks(pool_scores, true_scores, _own(rs)), pool_scores, true_scores)


def retrieval_examples(rs: RetrievalSet, rankings: dict[str, Ranking], seed: int) -> list[dict]:
    """One query of each kind, drawn at random (seeded, not picked for a good result): its passage
    and the top 3 of each model, each marked whether it is the right one."""
    rng = random.Random(seed)
    out = []
    for kind in KINDS:
        of_kind = [i for i, q in enumerate(rs.queries) if q.kind == kind]
        if not of_kind:
            continue
        i = rng.choice(of_kind)
        q = rs.queries[i]
        out.append({
            "kind": kind, "query": q.query, "answer": _clip(q.positive),
            "ranks": {name: _whole(r.rank[i]) for name, r in rankings.items()},
            "top": {name: [{"text": _clip(q.positive if j == q.passage else rs.passages[j]), "right": j == q.passage}
                           for j in r.top(i, q.passage)] for name, r in rankings.items()},
        })
    return out


def _whole(rank: float) -> int | float:
    """A rank as written: 12, or 12.5 for a passage that ties with another."""
    return int(rank) if float(rank).is_integer() else float(rank)


def _own(rs: RetrievalSet) -> np.ndarray:
    return np.array([q.passage for q in rs.queries], dtype=np.int64)


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_PASSAGE_CHARS else text[: EXAMPLE_PASSAGE_CHARS - 1].rstrip() + "…"
