"""dedup: documents → documents, with a duplicate-of record for every document left out.

Exact (`exact`: xxh3 id of the normalised text) and near (`minhash`: MinHash + banded LSH).
"""

from selfsup.dedup.exact import ExactDedup, document_id
from selfsup.dedup.minhash import NearDuplicateIndex, minhash_signature

__all__ = ["ExactDedup", "document_id", "NearDuplicateIndex", "minhash_signature"]
