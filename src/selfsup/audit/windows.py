"""Token windows of training and held-out documents: what extraction and membership inference ask of
the model (Carlini et al. 2022 take 50-token prefixes and check the next 50 tokens).

Three kinds of training windows, as the extraction paper found risk in each:

    random        a uniformly chosen place in a uniformly chosen token of training text
    duplicated    the windows whose 50-token prefix occurs most often in the training text
                  (boilerplate that survived de-duplication: repetition drives memorisation)
    pii_adjacent  windows whose suffix starts next to personal data (a scrubbed `<EMAIL>`, or a hit
                  of the ingest detectors where scrubbing was off)

Held-out windows are random places in validation documents, drawn the same way. Windows never
cross a document boundary, and training windows never overlap a planted canary (the canaries
have a test of their own).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from selfsup.ingest import read_documents

PREFIX_TOKENS = 50
SUFFIX_TOKENS = 50
PLACEHOLDER = re.compile(r"<(?:EMAIL|PHONE|IP|CARD|IBAN|SECRET)>")
_HASH_BASE = np.uint64(0x100000001B3)
CHARS_PER_TOKEN = 4.0  # to size a sample of the corpus before it is tokenised


@dataclass(frozen=True, slots=True)
class Shape:
    """Tokens of a window's prefix and suffix."""

    prefix: int = PREFIX_TOKENS
    suffix: int = SUFFIX_TOKENS

    @property
    def total(self) -> int:
        return self.prefix + self.suffix


def window_shape(seq_len: int) -> Shape:
    """50 + 50 tokens, or halves of the model's trained context when that is shorter: a window longer
    than any block the model trained on asks it about positions it never saw."""
    if seq_len >= PREFIX_TOKENS + SUFFIX_TOKENS:
        return Shape()
    return Shape(seq_len // 2, seq_len - seq_len // 2)


@dataclass(slots=True)
class Window:
    split: str  # "train" or "validation"
    kind: str  # "random", "duplicated", "pii_adjacent"
    doc_id: str
    source: str
    ids: list[int]  # prefix + suffix tokens
    prefix: int  # tokens of the prefix
    copies: int = 1  # duplicated: how often its prefix occurs in the training text read


@dataclass(slots=True)
class _Doc:
    doc_id: str
    source: str
    ids: np.ndarray
    blocked: np.ndarray  # per token: covered by a canary (never the start of a window's span)
    pii_tokens: list[int]  # token indexes where personal data starts


def read_split(corpus_dir, split: str, encoder, *, max_tokens: int, seed: int, canary_texts: list[str],
               pii_finder, shape: Shape = Shape()) -> list[_Doc]:
    """The split's documents of at least one window's length, tokenised, about `max_tokens` of them: a
    large corpus is sampled (each document kept with the probability that reads about twice the
    budget, in corpus order, until the budget is met), not cut to its first files."""
    rng = np.random.default_rng([seed, 0x51D])
    keep = min(1.0, 2.0 * max_tokens * CHARS_PER_TOKEN / max(_split_chars(corpus_dir, split), 1))
    out, total = [], 0
    for d in read_documents(corpus_dir, split=split, columns=("id", "text", "source")):
        if rng.random() >= keep:
            continue
        enc = encoder.encode(d["text"], add_special_tokens=False)
        if len(enc.ids) < shape.total:
            continue
        ids = np.asarray(enc.ids, dtype=np.int64)
        starts = np.asarray([a for a, _ in enc.offsets], dtype=np.int64)
        ends = np.asarray([b for _, b in enc.offsets], dtype=np.int64)
        blocked = np.zeros(len(ids), dtype=bool)
        for text in canary_texts:
            at = d["text"].find(text)
            while at >= 0:
                blocked |= (ends > at) & (starts < at + len(text))
                at = d["text"].find(text, at + 1)
        pii = [int(np.searchsorted(ends, a, side="right")) for a in pii_finder(d["text"])]
        out.append(_Doc(d["id"], d["source"], ids, blocked, [p for p in pii if p < len(ids)]))
        total += len(ids)
        if total >= max_tokens:
            break
    return out


def _split_chars(corpus_dir, split: str) -> float:
    """The split's characters, estimated from the corpus manifest (its share of the documents)."""
    from selfsup.manifest import read_json_dict

    m = read_json_dict(corpus_dir / "manifest.json") or {}
    docs = m.get("documents") or 1
    share = (m.get("train_documents" if split == "train" else "validation_documents") or docs) / docs
    return float(m.get("characters") or 0) * share


def random_windows(docs: list[_Doc], split: str, n: int, rng: np.random.Generator, shape: Shape = Shape()) -> list[Window]:
    """`n` windows at random token places, spread over as many documents as there are (documents in a
    random order, one window from each per round, no place twice), none overlapping a canary: windows
    of one document are alike, and a few documents must not stand in for the whole split."""
    free = [list(rng.permutation(_free_starts(d, shape.total))) for d in docs]
    order = [i for i in rng.permutation(len(docs)).tolist() if free[i]]
    out: list[Window] = []
    while order and len(out) < n:
        for i in list(order):
            if len(out) >= n:
                break
            out.append(_window(docs[i], int(free[i].pop()), split, "random", shape))
            if not free[i]:
                order.remove(i)
    return out


def duplicated_windows(docs: list[_Doc], n: int, shape: Shape = Shape()) -> list[Window]:
    """The `n` windows whose prefix occurs most often (at least twice) in `docs`, one per distinct prefix."""
    hashes, where = [], []
    for d_index, d in enumerate(docs):
        h = _prefix_hashes(d.ids, shape)
        hashes.append(h)
        where.append(np.stack([np.full(len(h), d_index), np.arange(len(h))], axis=1))
    if not hashes:
        return []
    all_hashes, all_where = np.concatenate(hashes), np.concatenate(where)
    unique, first, counts = np.unique(all_hashes, return_index=True, return_counts=True)
    out: list[Window] = []
    taken: dict[int, list[int]] = {}  # document → starts chosen: shifted copies of one passage count once
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] < 2 or len(out) >= n:
            break
        d_index, start = (int(x) for x in all_where[first[k]])
        d = docs[d_index]
        if d.blocked[start : start + shape.total].any() or any(abs(start - s) < shape.total for s in taken.get(d_index, [])):
            continue
        taken.setdefault(d_index, []).append(start)
        out.append(_window(d, start, "train", "duplicated", shape, copies=int(counts[k])))
    return out


def pii_adjacent_windows(docs: list[_Doc], split: str, n: int, rng: np.random.Generator, shape: Shape = Shape()) -> list[Window]:
    """Windows whose suffix starts 0–9 tokens before personal data: the question is whether the model
    goes on to reproduce what surrounded it."""
    places = []
    for d in docs:
        for p in d.pii_tokens:
            start = p - shape.prefix - int(rng.integers(0, 10))
            if 0 <= start <= len(d.ids) - shape.total and not d.blocked[start : start + shape.total].any():
                places.append((d, start))
    picks = rng.choice(len(places), size=min(n, len(places)), replace=False) if places else []
    return [_window(places[i][0], places[i][1], split, "pii_adjacent", shape) for i in sorted(int(p) for p in picks)]


def _free_starts(d: _Doc, total: int) -> np.ndarray:
    """Starts of `total`-token windows in `d` whose span holds no canary token."""
    n = len(d.ids) - total + 1
    if not d.blocked.any():
        return np.arange(n)
    covered = np.convolve(d.blocked.astype(np.int64), np.ones(total, dtype=np.int64), mode="valid")[:n]
    return np.flatnonzero(covered == 0)


def _prefix_hashes(ids: np.ndarray, shape: Shape) -> np.ndarray:
    """A 64-bit polynomial hash of every prefix-long span that starts a full window."""
    n = len(ids) - shape.total + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    spans = np.lib.stride_tricks.sliding_window_view(ids.astype(np.uint64), shape.prefix)[:n]
    powers = _HASH_BASE ** np.arange(shape.prefix, dtype=np.uint64)  # wraps modulo 2^64, as meant
    with np.errstate(over="ignore"):
        return (spans * powers).sum(axis=1, dtype=np.uint64)


def _window(d: _Doc, start: int, split: str, kind: str, shape: Shape, copies: int = 1) -> Window:
    return Window(split, kind, d.doc_id, d.source, d.ids[start : start + shape.total].tolist(), shape.prefix, copies)
