"""dedup: documents → documents, with a duplicate-of record for every document left out."""

from selfsup.dedup.exact import ExactDedup, document_id

__all__ = ["ExactDedup", "document_id"]
