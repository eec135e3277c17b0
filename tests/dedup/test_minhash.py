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
