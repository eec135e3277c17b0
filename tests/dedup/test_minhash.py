"""MinHash + LSH near-duplicates: planted near-copies are found, distinct documents are never merged."""

import random

import numpy as np

from selfsup.dedup.minhash import NearDuplicateIndex, lsh_bands, minhash_signature, shingle_hashes


def jaccard(a: str, b: str) -> float:
    x, y = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    return len(x & y) / len(x | y)


def planted_corpus(seed: int = 0, originals: int = 300, copies: int = 150):
    """Random 200-word documents, then near-copies: a new header line and 1–2 words changed."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(3000)]
    docs = [" ".join(rng.choices(vocabulary, k=200)) for _ in range(originals)]
    truth = {}
    for _ in range(copies):
        source = rng.randrange(originals)
        words = docs[source].split()
        for _ in range(rng.randint(1, 2)):
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        truth[len(docs)] = source
        docs.append(f"Exported {rng.randint(1, 9999)} times\n" + " ".join(words))
    return docs, truth


def test_signature_estimates_jaccard():
    """The share of equal signature positions is close to the true Jaccard of word 5-grams."""
    rng = random.Random(1)
    words = [f"w{rng.randrange(500)}" for _ in range(400)]
    a = " ".join(words)
    b = " ".join(words[:300] + [f"x{i}" for i in range(100)])
    estimate = float(np.mean(minhash_signature(a) == minhash_signature(b)))
    assert abs(estimate - jaccard(a, b)) < 0.1
    assert minhash_signature("") is None
    assert (minhash_signature("Same Text here") == minhash_signature("same text, HERE!")).all()  # words, lower-cased


def test_bands_put_the_s_curve_below_the_threshold():
    """16 bands × 8 rows for 128 permutations at 0.8: a pair at the threshold is a candidate ≥ 94% of the time."""
    bands, rows = lsh_bands(128, 0.8)
    assert (bands, rows) == (16, 8)
    assert 1 - (1 - 0.8**rows) ** bands > 0.94


def test_planted_near_duplicates_recall_and_precision():
    """On a synthetic set: recall ≥ 0.9 on planted copies with Jaccard ≥ 0.8, precision ≥ 0.9."""
    docs, truth = planted_corpus()
    index = NearDuplicateIndex(128, 0.8)
    found = {}
    for i, text in enumerate(docs):
        hit = index.original_of(minhash_signature(text))
        if hit is None:
            index.add(minhash_signature(text), str(i))
        else:
            found[i] = int(hit[0])
    planted = {c for c, s in truth.items() if jaccard(docs[c], docs[s]) >= 0.8}
    assert len(planted) > 100
    recall = len(planted & set(found)) / len(planted)
    precision = sum(1 for c, s in found.items() if truth.get(c) == s) / len(found)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)
    assert all(c >= 300 for c in found), "no original is merged into another"


def test_distinct_documents_are_not_merged():
    """Documents sharing a long boilerplate paragraph but with their own content stay apart."""
    shared = "This manual is the property of ACME and may not be copied without permission. " * 2
    rng = random.Random(2)
    index = NearDuplicateIndex(128, 0.8)
    for i in range(200):
        text = shared + " ".join(f"t{rng.randrange(10_000)}" for _ in range(60))
        signature = minhash_signature(text)
        assert index.original_of(signature) is None, i
        index.add(signature, str(i))


WORD_EDGE_CASES = [
    "plain ascii words, punctuation; under_scores and digits 42x",
    "Grüße aus Zürich — naïve café, “quotes” déjà-vu",
    "ΟΔΟΣ ΣΑΣ. ΑΣ'Α σίγμα τελικό",  # Greek final sigma depends on the neighbours: lower-case the whole text first
    "İstanbul ǅungla ﬁne Straße ẞ",  # lower() that changes length
    "中文文本，日本語のテキスト、한국어 텍스트 mixed with ascii",
    "x\u00b2 ½ ٣٤ \u200d\u200c zero-width joiners, emoji 😀🚀 and tabs\tand\nnewlines",
    "",
    "   \n\t ... !!! ",
]


def test_fast_word_split_equals_the_regex():
    """The bytes fast path gives exactly the words of `re.findall(r"\\w+", text.lower())`, non-ASCII included."""
    import re

    from selfsup.dedup.minhash import text_words

    for text in WORD_EDGE_CASES:
        assert text_words(text) == [w.encode() for w in re.findall(r"\w+", text.lower())], text


def test_signature_values_are_stable():
    """Signature values are pinned: ingest caches them with its extracted documents and reuses
    them across runs, so a change must bump INGEST_VERSION (selfsup.ingest.fingerprint) too.
    These are version 2 (32-bit permutations of the shingle hash's high half; version 1 permuted
    the whole 64-bit hash and was ~1.4x slower). The shingle hashes themselves did not change."""
    text = "The quick brown fox jumps over the lazy dog; Straße café ΣΑΣ naïve_words 42."
    signature = minhash_signature(text, 128)
    assert signature.dtype == np.uint64 and int(signature.max()) < 2**32
    assert [int(x) for x in signature[:4]] == [564235812, 441841096, 26967621, 236952599]
    assert int(signature.astype(object).sum()) == 54952750812
    shingles = shingle_hashes(text)
    assert [int(x) for x in shingles[:3]] == [46442032533257076, 493211678213413855, 523833125199630093]
    assert int(shingles.astype(object).sum() % 2**64) == 12621375911615617541


def test_signature_is_the_plain_minhash_across_block_and_padding_edges():
    """The flat, padded, blocked product gives exactly min_j (a_i * x_j + b_i mod 2^32) over the
    shingles' high 32 bits, written the slow obvious way: for texts shorter than a shingle, at
    and around the padding width (64) and the block size (512), and for several permutation counts."""
    from selfsup.dedup.minhash import _permutations, _shingle_array

    rng = random.Random(4)
    for length in (1, 4, 5, 6, 68, 69, 70, 516, 517, 518, 1100):
        text = " ".join(f"w{rng.randrange(2000)}" for _ in range(length))
        x = [int(h) >> 32 for h in _shingle_array(text)]
        for num_perm in (16, 128, 130):
            a, b = _permutations(num_perm)
            expected = [min((int(ai) * xj + int(bi)) % 2**32 for xj in x) for ai, bi in zip(a, b)]
            assert minhash_signature(text, num_perm).tolist() == expected, (length, num_perm)


def test_shared_buckets_still_find_the_right_original():
    """Kept documents that share an LSH bucket (equal in one band only) do not hide a true near-copy."""
    rng = np.random.default_rng(3)
    index = NearDuplicateIndex(128, 0.8)
    first = rng.integers(0, 2**63, size=128, dtype=np.uint64)
    index.add(first, "first")
    others = []
    for k in range(5):  # equal to `first` in band 0 only: same bucket there, far from a duplicate
        other = rng.integers(0, 2**63, size=128, dtype=np.uint64)
        other[: index.rows] = first[: index.rows]
        assert index.original_of(other) is None
        index.add(other, f"other-{k}")
        others.append(other)
    assert isinstance(index._tables[0][index._keys(first)[0]], list)
    copy = others[3].copy()
    copy[[5, 70]] += np.uint64(1)  # 126 of 128 positions equal
    assert index.original_of(copy) == ("other-3", 126 / 128)
