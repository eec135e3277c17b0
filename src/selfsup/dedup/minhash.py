"""Near-duplicate detection: MinHash signatures of word 5-gram shingles, banded LSH, then verification.

Signature: the text is lower-cased and split into words (`\\w+`); every run of 5 consecutive
words (fewer for a shorter text) is a shingle, hashed to 64 bits (xxh3 of each word, combined
by a multiply-rotate in numpy). Permutation i maps the high 32 bits x of a shingle hash to
`a_i * x + b_i mod 2^32` (a_i odd, from a fixed seed), and the signature keeps, per permutation,
the minimum: the share of equal positions in two signatures estimates the Jaccard similarity of
their shingle sets. Values fit in 32 bits; the array is uint64, the dtype ingest stores.

Why 32 bits (signature version 2; version 1 permuted the whole 64-bit hash mod 2^64): numpy has
no SIMD 64-bit multiply on most CPUs, while 32-bit multiply, add and min run 8-16 lanes at a
time on half the memory traffic, and the (shingles × permutations) product was the largest part
of the work. 32 bits lose nothing measurable: a permutation gives two distinct shingles the same
value once in 2^32, and on bench/dedup_throughput.py's planted near-duplicates recall went from
0.934 to 0.936 (precision 1.0 both). The shingle hashes did not change. Ingest caches signatures
with its extracted documents, so this change bumped `INGEST_VERSION` (selfsup.ingest.fingerprint).

Index: the signature is cut into `bands` bands of `rows` values; two documents become
candidates when any band is equal. `bands`×`rows` is chosen (for the permutation count) to
minimise the false positive + false negative area of the S-curve around the threshold, so that
pairs at the threshold are found with high probability. Candidates are then verified: a
document is a near-duplicate of the kept document with the highest estimated Jaccard, if that
is at least the threshold. Order is the walk order, so the first version seen is the one kept.

Memory: per kept document its signature (8 bytes × permutations) plus one dict entry per band;
per process the word-hash cache (bounded) and the permutation tables (2.3 MB at 128 permutations).

Speed (bench/dedup_throughput.py --quick, 2 shared cores: 5.8-7.4x datasketch's MinHash +
MinHashLSH at equal permutations, 6.4x in the quietest run; recall 0.936 against 0.751; 1.4-1.5x
version 1, measured alternately in one process): ASCII text is lower-cased and cut into
words by one `bytes.translate` + `split` (the regex only for pieces with non-ASCII characters),
word hashes are cached per process, and every numpy call works in place on preallocated buffers
with 0-d operands, because a 300-word document makes only ~30 calls and per-call overhead is
most of their cost. The product is laid out flat, (permutations × padded shingles) in one
contiguous buffer, so that multiply and add are each one SIMD loop instead of one short loop per
permutation; the minimum per row is one `reduceat`; and a signature skips the shingle hash's last
rotation, since the high 32 bits it keeps are one shift of the value before it.
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
# 0-d arrays, not numpy scalars: a ufunc takes them ~2x faster (no scalar conversion per call).
_MIX = np.array(0x9E3779B97F4A7C15, dtype=np.uint64)
_SHIFT_7, _SHIFT_25, _SHIFT_57 = (np.array(k, dtype=np.uint64) for k in (7, 25, 57))
_CHUNK = 512  # shingles per block of the (permutations, shingles) product: 256 KB at 128 permutations
_PAD = 64  # a block's shingle axis is padded to a multiple of this: one permutation table per width
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
    """word (UTF-8 bytes) → xxh3_64 as 8 little-endian bytes, computed once per process: most words
    of a corpus repeat, and one `b"".join` + `np.frombuffer` reads a document's hashes into numpy."""

    def __missing__(self, word: bytes) -> bytes:
        value = self[word] = xxhash.xxh3_64_intdigest(word).to_bytes(8, "little")
        return value


_word_hashes = _WordHashes()
_scratch = threading.local()  # per-thread product buffer: a fresh 256 KB array per call costs page faults


@cache
def _permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), uint32 each, a odd: permutation i is x → a_i * x + b_i mod 2^32."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


@cache
def _block_tables(num_perm: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a flat (num_perm, width) block: a and b with each value repeated `width` times (row i
    holds a_i, b_i), and where each row starts. At most 2.3 MB for 128 permutations, all widths."""
    a, b = _permutations(num_perm)
    return np.repeat(a, width), np.repeat(b, width), np.arange(0, num_perm * width, width)


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
    mixed = _unrotated_shingles(text, ngram)
    high = mixed >> _SHIFT_57
    np.left_shift(mixed, _SHIFT_7, out=mixed)
    return np.bitwise_or(mixed, high, out=mixed)  # rotated left by 7: the last step of the hash


def _unrotated_shingles(text: str, ngram: int = SHINGLE_WORDS) -> np.ndarray:
    """Every word n-gram's hash but for its final rotate-left by 7, which a signature skips: it
    needs only the high 32 bits of the hash, bits 25-56 before that rotation (one shift)."""
    words = text_words(text)
    if not words:
        return np.empty(0, dtype=np.uint64)
    if len(_word_hashes) > _WORD_CACHE_LIMIT:
        _word_hashes.clear()
    hashed = np.frombuffer(b"".join(map(_word_hashes.__getitem__, words)), dtype="<u8")
    n = min(ngram, len(words))
    count = len(words) - n + 1
    combined = hashed[:count].astype(np.uint64)  # round 0: 0 * _MIX ^ first word (a copy: written in place)
    high = np.empty_like(combined)
    # Integer arrays wrap silently on overflow (only numpy scalars warn): no errstate needed.
    for k in range(n):  # order matters: rotate-multiply the running value, then add the next word
        if k:
            np.right_shift(combined, _SHIFT_57, out=high)
            np.left_shift(combined, _SHIFT_7, out=combined)
            np.bitwise_or(combined, high, out=combined)  # rotated left by 7
            np.multiply(combined, _MIX, out=combined)
            np.bitwise_xor(combined, hashed[k : count + k], out=combined)
    return combined


def shingle_hashes(text: str, ngram: int = SHINGLE_WORDS) -> np.ndarray:
    """The distinct 64-bit hashes of the text's word n-grams (uint64, sorted)."""
    return np.unique(_shingle_array(text, ngram))


def minhash_signature(text: str, num_perm: int = 128) -> np.ndarray | None:
    """(num_perm,) uint64 MinHash (values < 2^32) of the text's word 5-grams; None for a text without words."""
    shingles = _unrotated_shingles(text)  # repeats cannot change a minimum: no need to make them unique
    if shingles.size == 0:
        return None
    signature = _block_minimum(shingles[:_CHUNK], num_perm)
    for start in range(_CHUNK, shingles.size, _CHUNK):  # long documents: a running minimum over blocks
        np.minimum(signature, _block_minimum(shingles[start : start + _CHUNK], num_perm), out=signature)
    return signature.astype(np.uint64)


def _block_minimum(unrotated: np.ndarray, num_perm: int) -> np.ndarray:
    """(num_perm,) uint32: per permutation, the minimum over these (at most _CHUNK) shingles.

    The block is (num_perm, width) in one contiguous buffer, each row a copy of the shingles'
    high 32 bits padded with the first one (a repeat cannot change a minimum) to `width`, a
    multiple of _PAD: then `*= a` and `+= b` against the flat permutation tables are one loop each.
    """
    n = unrotated.size
    width = -(-n // _PAD) * _PAD
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None or buffers[0].size != num_perm * _CHUNK:
        buffers = _scratch.buffers = (np.empty(num_perm * _CHUNK, dtype=np.uint32), np.empty(_CHUNK, dtype=np.uint32))
    product, row = buffers[0][: num_perm * width], buffers[1][:width]
    np.right_shift(unrotated, _SHIFT_25, out=row[:n], casting="unsafe")  # the hash's high 32 bits, as uint32
    row[n:] = row[0]
    np.copyto(product.reshape(num_perm, width), row)  # (num_perm, width): every row the same shingles
    a, b, row_starts = _block_tables(num_perm, width)
    np.multiply(product, a, out=product)  # wraps mod 2^32
    np.add(product, b, out=product)
    return np.minimum.reduceat(product, row_starts)  # per row; 1.5x faster than .reshape(num_perm, width).min(axis=1)


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
        keys = (bands @ self._band_mix).tolist()  # (bands,), wraps mod 2^64; matmul: one call, not two
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
