"""Pack stage: corpus + tokenizer → fixed-length token blocks in memory-mappable .npy shards."""

from selfsup.pack.pack import pack_corpus, token_dtype
from selfsup.pack.shards import TokenShards

__all__ = ["TokenShards", "pack_corpus", "token_dtype"]
