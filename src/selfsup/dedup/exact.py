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
    kept) and the kept original's id afterwards: the same id for an exact duplicate, another
    one for a text that was found to be a near-duplicate (`alias`). `add` and `in` let a caller
    check first and decide later (the near-duplicate index sits between the two).
    Memory is one short string per document seen, fine for millions of documents.
    """

    __slots__ = ("_original",)

    def __init__(self) -> None:
        self._original: dict[str, str] = {}

    def original_of(self, doc_id: str, *, remember: bool = True) -> str | None:
        original = self._original.get(doc_id)
        if original is None and remember:
            self._original[doc_id] = doc_id
        return original

    def add(self, doc_id: str) -> None:
        """Remember `doc_id` as kept."""
        self._original.setdefault(doc_id, doc_id)

    def alias(self, doc_id: str, original: str) -> None:
        """Remember `doc_id` as a (near) duplicate of the kept `original`."""
        self._original.setdefault(doc_id, original)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._original

    def __len__(self) -> int:
        return sum(1 for k, v in self._original.items() if k == v)
