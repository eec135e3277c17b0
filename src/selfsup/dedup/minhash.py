"""Near-duplicate detection: MinHash signatures of word 5-gram shingles, banded LSH, then verification.

Signature: the text is lower-cased and split into words (`\\w+`); every run of 5 consecutive
words (fewer for a shorter text) is a shingle, hashed to 64 bits (xxh3 of each word, combined
by a multiply-rotate in numpy). Permutation i maps a shingle hash h to `a_i * h + b_i mod 2^64`
(a_i odd, from a fixed seed), and the signature keeps, per permutation, the minimum: the share
of equal positions in two signatures estimates the Jaccard similarity of their shingle sets.

Index: the signature is cut into `bands` bands of `rows` values; two documents become
candidates when any band is equal. `bands`×`rows` is chosen (for the permutation count) to
minimise the false positive + false negative area of the S-curve around the threshold, so that
pairs at the threshold are found with high probability. Candidates are then verified: a
document is a near-duplicate of the kept document with the highest estimated Jaccard, if that
is at least the threshold. Order is the walk order, so the first version seen is the one kept.

Memory: per kept document its signature (8 bytes × permutations) plus one dict entry per band.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import xxhash

_WORD = re.compile(r"\w+")
SHINGLE_WORDS = 5
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 4096  # shingles per block in the (block, permutations) product: bounded memory


@cache
def _permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def shingle_hashes(text: str, ngram: int = SHINGLE_WORDS) -> np.ndarray:
    """The distinct 64-bit hashes of the text's word n-grams (uint64, sorted)."""
    words = _WORD.findall(text.lower())
    if not words:
        return np.empty(0, dtype=np.uint64)
    vocabulary = {w: xxhash.xxh3_64_intdigest(w.encode("utf-8")) for w in set(words)}
    hashed = np.fromiter((vocabulary[w] for w in words), dtype=np.uint64, count=len(words))
    n = min(ngram, len(words))
    combined = np.zeros(len(words) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):  # order matters: rotate-multiply the running value, then add the next word
            combined = (combined * _MIX) ^ hashed[k : len(words) - n + 1 + k]
            combined = (combined << np.uint64(7)) | (combined >> np.uint64(57))
    return np.unique(combined)


def minhash_signature(text: str, num_perm: int = 128) -> np.ndarray | None:
    """(num_perm,) uint64 MinHash of the text's word 5-grams; None for a text without words."""
    shingles = shingle_hashes(text)
    if shingles.size == 0:
        return None
    a, b = _permutations(num_perm)
    signature = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, shingles.size, _CHUNK):
            block = shingles[start : start + _CHUNK, None]  # (chunk, 1)
            np.minimum(signature, (block * a + b).min(axis=0), out=signature)  # (num_perm,)
    return signature


@cache
def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising FP + FN area of 1-(1-s^r)^b around `threshold`."""
    s = np.linspace(0, 1, 1001)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        if rows < 1:
            break
        p = 1 - (1 - s**rows) ** bands
        false_pos = np.trapezoid(np.where(s < threshold, p, 0), s)
        false_neg = np.trapezoid(np.where(s >= threshold, 1 - p, 0), s)
        error = false_pos + 20 * false_neg  # missing a duplicate costs more: candidates are verified
        if error < best_error:
            best, best_error = (bands, rows), error
    return best


class NearDuplicateIndex:
    """The kept documents' signatures, banded; `original_of` a new signature, `add` a kept one."""

    def __init__(self, num_perm: int = 128, threshold: float = 0.8) -> None:
        self.num_perm = num_perm
        self.threshold = threshold
        self.bands, self.rows = lsh_bands(num_perm, threshold)
        self._tables: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        self._signatures: list[np.ndarray] = []
        self._ids: list[str] = []

    def _keys(self, signature: np.ndarray) -> list[int]:
        r = self.rows
        return [xxhash.xxh3_64_intdigest(signature[i * r : (i + 1) * r].tobytes()) for i in range(self.bands)]

    def original_of(self, signature: np.ndarray) -> tuple[str, float] | None:
        """(id, estimated Jaccard) of the most similar kept document at or above the threshold."""
        candidates: set[int] = set()
        for table, key in zip(self._tables, self._keys(signature)):
            candidates.update(table.get(key, ()))
        best: tuple[float, int] | None = None
        for row in sorted(candidates):
            similarity = float(np.count_nonzero(self._signatures[row] == signature)) / self.num_perm
            if similarity >= self.threshold and (best is None or similarity > best[0]):
                best = (similarity, row)
        return None if best is None else (self._ids[best[1]], best[0])

    def add(self, signature: np.ndarray, doc_id: str) -> None:
        row = len(self._ids)
        self._signatures.append(signature)
        self._ids.append(doc_id)
        for table, key in zip(self._tables, self._keys(signature)):
            table.setdefault(key, []).append(row)

    def __len__(self) -> int:
        return len(self._ids)
