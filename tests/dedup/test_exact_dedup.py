"""Exact dedup: ids are a stable hash of the text, and the first occurrence is the one kept."""

from selfsup.dedup import ExactDedup, document_id


def test_document_id_is_stable_16_hex():
    """The id depends on the text only: fixed across runs and machines (a golden value)."""
    assert document_id("hello") == "9555e8555c62dcfd"
    assert len(document_id("")) == 16 and document_id("a") != document_id("b")


def test_first_occurrence_is_kept_and_named_as_original():
    """`original_of` returns None for a new id and the kept id for every repeat."""
    dedup = ExactDedup()
    a, b = document_id("alpha"), document_id("beta")
    assert dedup.original_of(a) is None
    assert dedup.original_of(b) is None
    assert dedup.original_of(a) == a
    assert len(dedup) == 2
