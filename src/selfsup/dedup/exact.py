"""Exact de-duplication: a document is its normalised text, named by a hash of it.

The id is xxh3_64 of the normalised text's UTF-8 bytes, as 16 hex characters. Because it depends
on nothing but the text, the same document gets the same id in every run, on every machine, and
two identical texts (after `normalise_text`) are one document. The first one seen is kept; the
walk order is sorted, so "first" is deterministic too.
"""

from __future__ import annotations

import xxhash


def document_id(text: str) -> str:
    """The stable id of an (already normalised) text: 16 hex characters of xxh3_64."""
    return xxhash.xxh3_64_hexdigest(text.encode("utf-8"))


class ExactDedup:
    """Remembers the documents kept so far and names the original of a repeat.

    `original_of(id)` returns None the first time an id is offered (it is now remembered as
    kept) and the kept original's id afterwards. For exact duplicates that is the same id; the
    signature leaves room for a near-duplicate finder whose original has another id.
    Memory is one short string per kept document, fine for millions of documents.
    """

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: set[str] = set()

    def original_of(self, doc_id: str) -> str | None:
        if doc_id in self._kept:
            return doc_id
        self._kept.add(doc_id)
        return None

    def __len__(self) -> int:
        return len(self._kept)
