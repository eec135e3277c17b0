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

Speed (bench/dedup_throughput.py: 5-6x datasketch's MinHash + MinHashLSH at equal permutations,
with better recall) comes without changing a single signature value, because ingest stores
signatures with its extracted documents and reuses them across runs (a test pins the values):
ASCII text is lower-cased and cut into words by one `bytes.translate` + `split` (the regex only
for pieces with non-ASCII characters), word hashes are cached per process, and the
(shingles, permutations) product is written into a reused buffer instead of fresh arrays.
"""

from __future__ import annotations

import re
import threading
from functools import cache

import numpy as np
import xxhash

_WORD = re.compile(r"\w+")
_NON_ASCII_NON_WORD = re.compile(r"[^\x00-\x7f\w]+")
SHINGLE_WORDS = 5
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 512  # shingles per block of the (block, permutations) product: 512 KB at 128 permutations, cache-sized
# bytes.translate table: every ASCII byte that is not a word character (\w) becomes a space; the
# rest, and all bytes of multi-byte UTF-8 characters, stay as they are.
_ASCII_NON_WORD_TO_SPACE = bytes(
    b if b >= 0x80 or chr(b).isalnum() or b == ord("_") else ord(" ") for b in range(256)
)
# ... and A-Z to a-z as well: for ASCII text one translate both lower-cases and cuts.
_ASCII_LOWER_NON_WORD_TO_SPACE = _ASCII_NON_WORD_TO_SPACE.translate(
    bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
)
_WORD_CACHE_LIMIT = 1 << 20  # words whose hash is remembered (a domain's vocabulary); ~100 MB at most


class _WordHashes(dict):
    """word (UTF-8 bytes) → xxh3_64, computed once per process: most words of a corpus repeat."""

    def __missing__(self, word: bytes) -> int:
        value = self[word] = xxhash.xxh3_64_intdigest(word)
        return value


_word_hashes = _WordHashes()
_scratch = threading.local()  # per-thread (chunk, num_perm) buffer: a fresh 0.5 MB array per call costs page faults


@cache
def _permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def text_words(text: str) -> list[bytes]:
    """The lower-cased text's `\\w+` runs, as UTF-8 bytes, in order.

    Same words as `re.findall(r"\\w+", text.lower())`, 3-4x faster: ASCII non-word bytes become
    spaces (bytes.translate) and `split()` cuts there; only a piece holding non-ASCII characters
    (where \\w needs Unicode tables) goes through the regex.
    """
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_LOWER_NON_WORD_TO_SPACE).split()
    # Non-ASCII characters that are not word characters (curly quotes, dashes) only separate
    # words, as a space does: with them blanked, most prose is ASCII again and takes the fast path.
    lowered = _NON_ASCII_NON_WORD.sub(" ", text.lower())
    if lowered.isascii():
        return lowered.encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).split()
    data = lowered.encode("utf-8", "surrogatepass")
    pieces = data.translate(_ASCII_NON_WORD_TO_SPACE).split()
    words: list[bytes] = []
    for piece in pieces:
        if piece.isascii():
            words.append(piece)
        else:
            words.extend(w.encode("utf-8") for w in _WORD.findall(piece.decode("utf-8", "surrogatepass")))
    return words


def _shingle_array(text: str, ngram: int = SHINGLE_WORDS) -> np.ndarray:
    """The 64-bit hash of every word n-gram, in text order, repeats included (uint64)."""
    words = text_words(text)
    if not words:
        return np.empty(0, dtype=np.uint64)
    if len(_word_hashes) > _WORD_CACHE_LIMIT:
        _word_hashes.clear()
    hashed = np.fromiter(map(_word_hashes.__getitem__, words), dtype=np.uint64, count=len(words))
    n = min(ngram, len(words))
    count = len(words) - n + 1
    combined = hashed[:count].copy()  # round 0: 0 * _MIX ^ first word
    with np.errstate(over="ignore"):
        for k in range(n):  # order matters: rotate-multiply the running value, then add the next word
            if k:
                combined *= _MIX
                combined ^= hashed[k : count + k]
            high = combined >> np.uint64(57)
            combined <<= np.uint64(7)
            combined |= high  # rotated left by 7
    return combined


def shingle_hashes(text: str, ngram: int = SHINGLE_WORDS) -> np.ndarray:
    """The distinct 64-bit hashes of the text's word n-grams (uint64, sorted)."""
    return np.unique(_shingle_array(text, ngram))


def minhash_signature(text: str, num_perm: int = 128) -> np.ndarray | None:
    """(num_perm,) uint64 MinHash of the text's word 5-grams; None for a text without words."""
    shingles = _shingle_array(text)  # repeats cannot change a minimum: no need to make them unique
    if shingles.size == 0:
        return None
    a, b = _permutations(num_perm)
    scratch = getattr(_scratch, "buffer", None)
    if scratch is None or scratch.shape[1] != num_perm:
        scratch = _scratch.buffer = np.empty((_CHUNK, num_perm), dtype=np.uint64)
    with np.errstate(over="ignore"):
        if shingles.size <= _CHUNK:  # the common case: one block, no running minimum to keep
            product = scratch[: shingles.size]  # (shingles, num_perm), written in place
            np.multiply(shingles[:, None], a, out=product)
            product += b
            return product.min(axis=0)
        signature = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, shingles.size, _CHUNK):
            block = shingles[start : start + _CHUNK, None]  # (chunk, 1)
            product = scratch[: len(block)]  # (chunk, num_perm), written in place
            np.multiply(block, a, out=product)
            product += b
            np.minimum(signature, product.min(axis=0), out=signature)  # (num_perm,)
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
    """The kept documents' signatures, banded; `original_of` a new signature, `add` a kept one.

    A band's key is a random linear hash of its rows (one numpy product for all bands); a bucket
    holds a row number, or a list once a second document lands in it: most buckets hold one
    document, and plain ints keep the garbage collector's work flat as the index grows.
    """

    def __init__(self, num_perm: int = 128, threshold: float = 0.8) -> None:
        self.num_perm = num_perm
        self.threshold = threshold
        self.bands, self.rows = lsh_bands(num_perm, threshold)
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._signatures: list[np.ndarray] = []
        self._ids: list[str] = []
        self._band_mix = np.random.default_rng(7).integers(1, 2**63, size=self.rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._last: tuple[bytes, list[int]] = (b"", [])  # original_of then add: keys computed once

    def _keys(self, signature: np.ndarray) -> list[int]:
        raw = signature.tobytes()  # compared by value: a caller may reuse one array for several signatures
        if raw == self._last[0]:
            return self._last[1]
        bands = signature[: self.bands * self.rows].reshape(self.bands, self.rows)
        keys = (bands * self._band_mix).sum(axis=1, dtype=np.uint64).tolist()  # (bands,), wraps mod 2^64
        self._last = (raw, keys)
        return keys

    def original_of(self, signature: np.ndarray) -> tuple[str, float] | None:
        """(id, estimated Jaccard) of the most similar kept document at or above the threshold."""
        candidates: set[int] = set()
        for table, key in zip(self._tables, self._keys(signature)):
            hit = table.get(key)
            if hit is None:
                continue
            if isinstance(hit, int):
                candidates.add(hit)
            else:
                candidates.update(hit)
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
            hit = table.get(key)
            if hit is None:
                table[key] = row
            elif isinstance(hit, int):
                table[key] = [hit, row]
            else:
                hit.append(row)

    def __len__(self) -> int:
        return len(self._ids)
