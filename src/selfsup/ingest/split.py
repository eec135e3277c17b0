"""Train / validation split, decided by the document id alone.

A document is in `validation` iff `xxh64(id) % 1_000_000 < validation_fraction * 1_000_000`.
The rule looks at nothing but the document's own id, so adding or removing other documents never
moves a document across the split (a model's held-out set stays held out as the corpus grows).

Small corpora get one correction, made after all documents are known, so that every stage
downstream has something to train and to validate on:

- at least one document is in train: if the rule put every document in validation, the one
  with the largest bucket (then largest id) moves to train;
- with at least 2 documents and `validation_fraction > 0`, at least one is in validation: if
  the rule put none there, the one with the smallest bucket (then smallest id) moves there.

Both choices are deterministic. The corrected document may move back when the corpus grows and
the rule alone fills both sides; on corpora of more than a few hundred documents the correction
(almost) never applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import xxhash

BUCKETS = 1_000_000


def bucket(doc_id: str) -> int:
    """The document's place in [0, 1_000_000): uniform, and fixed by its id."""
    return xxhash.xxh64_intdigest(doc_id.encode("ascii")) % BUCKETS


def split_of(doc_id: str, validation_fraction: float) -> str:
    return "validation" if bucket(doc_id) < validation_fraction * BUCKETS else "train"


@dataclass(slots=True)
class SplitTally:
    """Counts per split, and the two candidates for the small-corpus correction with their shard."""

    train: int = 0
    validation: int = 0
    lowest: tuple[int, str, int] | None = None  # (bucket, id, shard) of the smallest
    highest: tuple[int, str, int] | None = None  # (bucket, id, shard) of the largest

    def add(self, doc_id: str, split: str, shard: int) -> None:
        if split == "validation":
            self.validation += 1
        else:
            self.train += 1
        key = (bucket(doc_id), doc_id, shard)
        if self.lowest is None or key[:2] < self.lowest[:2]:
            self.lowest = key
        if self.highest is None or key[:2] > self.highest[:2]:
            self.highest = key

    def correction(self, validation_fraction: float) -> tuple[str, str, int] | None:
        """(id, new split, shard) of the one document to move, or None; updates the counts."""
        if self.train == 0 and self.highest is not None:
            self.train, self.validation = 1, self.validation - 1
            return self.highest[1], "train", self.highest[2]
        if self.validation == 0 and self.train >= 2 and validation_fraction > 0 and self.lowest is not None:
            self.train, self.validation = self.train - 1, 1
            return self.lowest[1], "validation", self.lowest[2]
        return None
